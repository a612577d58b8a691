"""The outbox: side effects written in the deciding transaction, delivered by the worker.

Public interface: ``enqueue`` and ``enqueue_many`` (in the caller's transaction), ``cancel``,
``register_handler`` (one handler per kind) and ``DeliveryError`` (the handlers' error
contract). The worker's
periodic step ``outbox`` calls ``deliver_due``. See docs/DELIVERY.md.
"""

from ekiden.outbox.dispatcher import deliver_due, outbox_step
from ekiden.outbox.handlers import AfterSent, Handler, register_handler
from ekiden.outbox.models import DeliveryError, OutboxEntry, Status
from ekiden.outbox.service import (
    NewEntry,
    cancel,
    enqueue,
    enqueue_many,
    entry_by_id,
    entry_by_key,
)

__all__ = [
    "AfterSent",
    "DeliveryError",
    "Handler",
    "NewEntry",
    "OutboxEntry",
    "Status",
    "cancel",
    "deliver_due",
    "enqueue",
    "enqueue_many",
    "entry_by_id",
    "entry_by_key",
    "outbox_step",
    "register_handler",
]
