"""The registry of delivery handlers, one per outbox kind.

A handler delivers one outbox entry. It raises ``DeliveryError`` when it cannot; otherwise
it may return an ``AfterSent`` callback that the dispatcher runs in the transaction that
marks the entry sent (so an event such as ``email_delivered`` is recorded exactly when the
row becomes "sent", never twice). ``on_failed`` runs in the transaction that records a
permanent failure (e.g. so that a journey can take its failure branch). ``prepare``, when
given, is called once for a group of claimed entries of its kind right before they are
delivered one by one, so a handler can load what the group needs in a few queries (and keep
it in ``DeliveryContext.scratch``) instead of a few queries per entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from ekiden.clock import Clock
from ekiden.outbox.models import OutboxEntry

if TYPE_CHECKING:
    from ekiden.outbox.context import DeliveryContext

AfterSent = Callable[[Connection], None]
Handler = Callable[["DeliveryContext", OutboxEntry], AfterSent | None]
FailureHook = Callable[[Connection, Clock, OutboxEntry, str], None]
Preparer = Callable[["DeliveryContext", Sequence[OutboxEntry]], None]


@dataclass(frozen=True)
class Registered:
    handler: Handler
    on_failed: FailureHook | None = None
    prepare: Preparer | None = None


_handlers: dict[str, Registered] = {}


def register_handler(
    kind: str,
    handler: Handler,
    *,
    on_failed: FailureHook | None = None,
    prepare: Preparer | None = None,
) -> None:
    """Deliver outbox entries of ``kind`` with ``handler`` (a later registration for the same
    kind replaces the earlier one). ``prepare(context, entries)`` may load in bulk what a
    group of entries needs; the handler must still work for an entry it did not see."""
    _handlers[kind] = Registered(handler, on_failed, prepare)


def handler_for(kind: str) -> Registered | None:
    _load_builtin_handlers()
    return _handlers.get(kind)


def registered_kinds() -> list[str]:
    _load_builtin_handlers()
    return sorted(_handlers)


# Modules whose import registers handlers: the outbox's own kinds and other capabilities'.
HANDLER_MODULES = ("ekiden.outbox.mail", "ekiden.outbox.webhooks", "ekiden.messaging.handler")


_loaded = False


def _load_builtin_handlers() -> None:
    global _loaded
    if _loaded:
        return
    for module in HANDLER_MODULES:
        importlib.import_module(module)
    _loaded = True
