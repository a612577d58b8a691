"""The outbox handler for kind "email": decide once more, render, deliver, record.

Right before delivery, with no transaction open, the handler reads the message and asks:
1. is the message still queued? (a cancelled send or a finished delivery: nothing to do);
2. ``may_send`` (with the template, so its subscription topic counts) — an unsubscribe, a
   suppression or a hard bounce since the message was queued takes effect now: the message
   becomes ``skipped`` with the reason;
3. marketing only: quiet hours in the contact's time zone — the message waits: a new
   outbox row due when the quiet hours end (never dropped);
4. marketing only: the frequency cap — over the cap, the message is ``skipped``
   ("frequency_cap"): a late marketing email is worth less than a rested inbox.
Then it composes the message (``ekiden.messaging.compose``) with its stable Message-ID and
sends it through the run's SMTP transport. What follows a delivery (status ``sent``, the
``email_delivered`` event) is returned as an ``AfterSent`` callback, so it commits in the
transaction that marks the outbox row sent — never twice.

Groups: the dispatcher hands ``prepare_emails`` each group of claimed entries (at most
``outbox.dispatcher.GROUP_SIZE``) right before delivering them. It reads the group's
messages, the answers to 1-4 and the recipients' template data in a few queries instead of
several per message; a template version is read once per run. The consent check of a message
therefore runs at most one group's deliveries (a few tens of milliseconds) before its own,
and always after the message was claimed. The message is then written straight to its wire
form (``compose.to_wire``) and sent with its envelope known, without building an
``EmailMessage`` and parsing its headers again. An entry the group did not cover is delivered
the one-by-one way, with the same decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select, update

from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.db.engine import read_connection
from ekiden.errors import EkidenError
from ekiden.messaging.compliance import may_send, may_send_many
from ekiden.messaging.compose import (
    message_id_header,
    names_read,
    render_with,
    template_sources,
    to_wire,
)
from ekiden.messaging.context import load_contexts
from ekiden.messaging.models import TemplateVersion
from ekiden.messaging.sending_compose import compose_message, send_key_of
from ekiden.messaging.sending_policy import (
    contact_zone,
    marketing_sent_counts,
    over_frequency_cap,
    parse_quiet_hours,
    quiet_until,
)
from ekiden.messaging.sends_tables import email_messages, email_sends
from ekiden.messaging.store import template_version
from ekiden.outbox import AfterSent, DeliveryError, OutboxEntry, enqueue, register_handler
from ekiden.outbox.context import DeliveryContext, current_attempt
from ekiden.outbox.verp import bounce_address_for
from ekiden.tracking.events import NewEvent, record_events

FREQUENCY_CAP = "frequency_cap"


@dataclass(frozen=True)
class Pending:
    """A queued message with what delivery needs to know about it."""

    id: int
    send_id: int | None
    contact_id: int
    template_key: str
    template_version: int
    category: str
    variant: str | None
    subject: str | None  # the A/B variant's subject, when it has one
    time_zone: str | None


def _pending_query() -> Select[Any]:
    return (
        select(email_messages, contacts.c.time_zone, email_sends.c.ab)
        .join(contacts, contacts.c.id == email_messages.c.contact_id)
        .outerjoin(email_sends, email_sends.c.id == email_messages.c.send_id)
        .where(email_messages.c.status == "queued")
    )


def _pending(row: Any) -> Pending:
    subject = None
    if row.ab and row.variant:
        variants: list[dict[str, Any]] = row.ab.get("variants", [])
        subject = next((v.get("subject") for v in variants if v.get("name") == row.variant), None)
    return Pending(
        id=row.id,
        send_id=row.send_id,
        contact_id=row.contact_id,
        template_key=row.template_key,
        template_version=row.template_version,
        category=row.category,
        variant=row.variant,
        subject=subject,
        time_zone=row.time_zone,
    )


def _load(conn: Connection, message_id: int) -> Pending | None:
    row = conn.execute(_pending_query().where(email_messages.c.id == message_id)).first()
    return None if row is None else _pending(row)


def _load_many(conn: Connection, message_ids: Sequence[int]) -> dict[int, Pending]:
    rows = conn.execute(_pending_query().where(email_messages.c.id.in_(list(message_ids))))
    return {row.id: _pending(row) for row in rows}


def _skip(message_id: int, reason: str) -> AfterSent:
    def after(conn: Connection) -> None:
        conn.execute(
            update(email_messages)
            .where(email_messages.c.id == message_id, email_messages.c.status == "queued")
            .values(status="skipped", reason=reason)
        )

    return after


def _defer(clock: Clock, message: Pending, until: datetime) -> AfterSent:
    def after(conn: Connection) -> None:
        enqueue(
            conn,
            clock,
            kind="email",
            key=f"email:{message.id}:after:{until:%Y%m%dT%H%M}",
            payload={"message_id": message.id},
            contact_id=message.contact_id,
            due_at=until,
        )

    return after


# Built once: the statement is the same for every message (its cache key is not recomputed).
_MARK_SENT = (
    update(email_messages)
    .where(email_messages.c.id == bindparam("queued_id"), email_messages.c.status == "queued")
    .values(status="sent")
)


def _delivered(clock: Clock, message: Pending, header: str) -> AfterSent:
    def after(conn: Connection) -> None:
        now = clock.now()
        changed = conn.execute(
            _MARK_SENT, {"queued_id": message.id, "sent_at": now, "message_id_header": header}
        ).rowcount
        if not changed:
            return
        properties: dict[str, Any] = {"send_id": str(message.id), "email": message.template_key}
        if message.send_id is not None:
            properties["send"] = message.send_id
        if message.variant is not None:
            properties["variant"] = message.variant
        record_events(
            conn,
            clock,
            [
                NewEvent(
                    type="email_delivered",
                    occurred_at=now,
                    source="email",
                    contact_id=message.contact_id,
                    properties=properties,
                    message_id=f"email_delivered:{message.id}",
                )
            ],
        )

    return after


@dataclass
class Prepared:
    """What ``prepare_emails`` read for one message of the group."""

    message: Pending | None  # None: no longer queued (cancelled, skipped, delivered)
    refusal: str | None = None
    sent_recently: int = 0  # marketing emails in the frequency window (when capped)
    pinned: TemplateVersion | None = None
    data: dict[str, Any] | None = None  # the recipient's template data


@dataclass
class _Group:
    """The prepared group of one lane; ``sent`` counts the group's own deliveries per
    contact, so two messages to one contact in a group still respect the cap."""

    prepared: dict[int, Prepared]
    sent: dict[int, int] = field(default_factory=dict)


_GROUP = "email.group"
_VERSIONS = "email.versions"


def _message_id(entry: OutboxEntry) -> int | None:
    try:
        return int(entry.payload["message_id"])
    except (KeyError, TypeError, ValueError):
        return None


def prepare_emails(context: DeliveryContext, entries: Sequence[OutboxEntry]) -> None:
    """Read what a group of deliveries needs in a few queries (see the module docstring)."""
    context.scratch.pop(_GROUP, None)
    settings = context.settings
    wanted = [mid for mid in (_message_id(e) for e in entries) if mid is not None]
    # template versions never change once saved: read once per run
    versions: dict[tuple[str, int], TemplateVersion] = context.scratch.setdefault(_VERSIONS, {})
    prepared: dict[int, Prepared] = {mid: Prepared(None) for mid in wanted}
    with read_connection(context.engine) as conn:
        found = _load_many(conn, wanted)
        by_rule: dict[tuple[str, str], list[Pending]] = {}
        for message in found.values():
            by_rule.setdefault((message.category, message.template_key), []).append(message)
        for (category, key), same in by_rule.items():
            refusals = may_send_many(conn, [m.contact_id for m in same], category, template=key)
            for message in same:
                prepared[message.id] = Prepared(message, refusal=refusals[message.contact_id])
        cap, days = settings.email_frequency_cap, settings.email_frequency_days
        capped = [m.contact_id for m in found.values() if m.category == "marketing"]
        if cap > 0 and capped:
            counts = marketing_sent_counts(conn, capped, context.clock.now() - timedelta(days=days))
            for item in prepared.values():
                if item.message is not None:
                    item.sent_recently = counts.get(item.message.contact_id, 0)
        by_version: dict[tuple[str, int], list[Pending]] = {}
        for item in prepared.values():
            if item.message is not None and item.refusal is None:
                pair = (item.message.template_key, item.message.template_version)
                by_version.setdefault(pair, []).append(item.message)
        for (key, number), same in by_version.items():
            pinned = versions.get((key, number))
            if pinned is None:
                try:
                    pinned = versions[(key, number)] = template_version(conn, key, number)
                except EkidenError:
                    continue  # delivered one by one, where the error is recorded
            used: frozenset[str] = frozenset()
            for subject in {m.subject for m in same}:
                overrides = None if subject is None else {"subject": subject}
                used |= names_read(template_sources(pinned, overrides))
            data = load_contexts(conn, [m.contact_id for m in same], used)
            for message in same:
                prepared[message.id].pinned = pinned
                prepared[message.id].data = data.get(message.contact_id)
        conn.rollback()
    context.scratch[_GROUP] = _Group(prepared)


def _decide(
    context: DeliveryContext, message: Pending, refusal: str | None, over_cap: Callable[[], bool]
) -> AfterSent | None:
    """Decisions 2-4 of the module docstring: an AfterSent that skips or defers the message,
    or None when it goes now."""
    clock, settings = context.clock, context.settings
    if refusal is not None:
        return _skip(message.id, refusal)
    if message.category == "marketing":
        zone = contact_zone(message.time_zone, settings.zone)
        until = quiet_until(clock.now(), zone, parse_quiet_hours(settings.email_quiet_hours))
        if until is not None:
            return _defer(clock, message, until)
        if over_cap():
            return _skip(message.id, FREQUENCY_CAP)
    return None


def deliver_email(context: DeliveryContext, entry: OutboxEntry) -> AfterSent | None:
    """Deliver the message ``entry.payload["message_id"]`` (see the module docstring)."""
    message_id = int(entry.payload["message_id"])
    group: _Group | None = context.scratch.get(_GROUP)
    item = group.prepared.pop(message_id, None) if group is not None else None
    if group is None or item is None:
        return _deliver_alone(context, entry, message_id)
    message = item.message
    if message is None:
        return None  # cancelled, skipped or already delivered
    settings = context.settings
    cap = settings.email_frequency_cap

    def over_cap() -> bool:
        return cap > 0 and item.sent_recently + group.sent.get(message.contact_id, 0) >= cap

    decided = _decide(context, message, item.refusal, over_cap)
    if decided is not None:
        return decided
    if item.pinned is None or item.data is None:
        return _deliver_alone(context, entry, message_id)
    try:
        rendered = render_with(
            context.clock,
            settings,
            item.pinned,
            item.data,
            contact_id=message.contact_id,
            message_id=message.id,
            send_key=send_key_of(message.send_id),
            ab_variant=message.variant,
            overrides=None if message.subject is None else {"subject": message.subject},
        )
    except EkidenError as exc:  # a template that fails to render, no sender configured
        raise DeliveryError(f"cannot compose: {exc.message}", permanent=True) from None
    data = to_wire(settings, context.clock, rendered, message.id)
    header = message_id_header(settings, message.id)
    attempt = current_attempt.get()
    if attempt is not None:
        attempt.message_id = header
    envelope = bounce_address_for(settings, entry.id) or rendered.sender_address
    context.smtp.send_wire(envelope, [rendered.to_address], data)
    if message.category == "marketing":
        group.sent[message.contact_id] = group.sent.get(message.contact_id, 0) + 1
    return _delivered(context.clock, message, header)


def _deliver_alone(
    context: DeliveryContext, entry: OutboxEntry, message_id: int
) -> AfterSent | None:
    """One message with its own queries: the same decisions, composition and sending."""
    del entry
    clock, settings = context.clock, context.settings
    # reads only: on SQLite this does not take the write lock while composing
    with read_connection(context.engine) as conn:
        message = _load(conn, message_id)
        if message is None:
            return None  # cancelled, skipped or already delivered
        refusal = may_send(
            conn, message.contact_id, message.category, template=message.template_key
        )

        def over_cap() -> bool:
            return over_frequency_cap(
                conn,
                message.contact_id,
                clock.now(),
                cap=settings.email_frequency_cap,
                days=settings.email_frequency_days,
            )

        decided = _decide(context, message, refusal, over_cap)
        if decided is not None:
            return decided
        try:
            composed = _compose(conn, context, message)
        except EkidenError as exc:  # a template that fails to render, no sender configured
            raise DeliveryError(f"cannot compose: {exc.message}", permanent=True) from None
        conn.rollback()  # no transaction stays open while talking to the SMTP server
    header = str(composed["Message-ID"])
    context.smtp.send(composed)
    return _delivered(clock, message, header)


def _compose(conn: Connection, context: DeliveryContext, message: Pending) -> EmailMessage:
    return compose_message(
        conn,
        context.clock,
        context.settings,
        template_key=message.template_key,
        version=message.template_version,
        contact_id=message.contact_id,
        message_id=message.id,
        send_id=message.send_id,
        variant=message.variant,
        subject=message.subject,
    )


def record_failure(conn: Connection, clock: Clock, entry: OutboxEntry, reason: str) -> None:
    """A permanent delivery failure (an SMTP 5xx, retries exhausted): the message failed."""
    del clock
    conn.execute(
        update(email_messages)
        .where(
            email_messages.c.id == int(entry.payload["message_id"]),
            email_messages.c.status == "queued",
        )
        .values(status="failed", reason=reason[:2000])
    )


register_handler("email", deliver_email, on_failed=record_failure, prepare=prepare_emails)
