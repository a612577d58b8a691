"""The outbox handler for kind "email": decide once more, render, deliver, record.

Right before delivery, with no transaction open, the handler reads the message and asks:
1. is the message still queued? (a cancelled send or a finished delivery: nothing to do);
2. ``may_send`` — an unsubscribe, a suppression or a hard bounce since the message was
   queued takes effect now: the message becomes ``skipped`` with the reason;
3. marketing only: quiet hours in the contact's time zone — the message waits: a new
   outbox row due when the quiet hours end (never dropped);
4. marketing only: the frequency cap — over the cap, the message is ``skipped``
   ("frequency_cap"): a late marketing email is worth less than a rested inbox.
Then it composes the message (``ekiden.messaging.compose``) with its stable Message-ID and
sends it through the run's SMTP transport. What follows a delivery (status ``sent``, the
``email_delivered`` event) is returned as an ``AfterSent`` callback, so it commits in the
transaction that marks the outbox row sent — never twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Connection, select, update

from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.db.engine import read_connection
from ekiden.errors import EkidenError
from ekiden.messaging.compliance import may_send
from ekiden.messaging.sending_compose import compose_message
from ekiden.messaging.sending_policy import (
    contact_zone,
    over_frequency_cap,
    parse_quiet_hours,
    quiet_until,
)
from ekiden.messaging.sends_tables import email_messages, email_sends
from ekiden.outbox import AfterSent, DeliveryError, OutboxEntry, enqueue, register_handler
from ekiden.outbox.context import DeliveryContext
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


def _load(conn: Connection, message_id: int) -> Pending | None:
    row = conn.execute(
        select(email_messages, contacts.c.time_zone, email_sends.c.ab)
        .join(contacts, contacts.c.id == email_messages.c.contact_id)
        .outerjoin(email_sends, email_sends.c.id == email_messages.c.send_id)
        .where(email_messages.c.id == message_id, email_messages.c.status == "queued")
    ).first()
    if row is None:
        return None
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


def _delivered(clock: Clock, message: Pending, header: str) -> AfterSent:
    def after(conn: Connection) -> None:
        now = clock.now()
        changed = conn.execute(
            update(email_messages)
            .where(email_messages.c.id == message.id, email_messages.c.status == "queued")
            .values(status="sent", sent_at=now, message_id_header=header)
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


def deliver_email(context: DeliveryContext, entry: OutboxEntry) -> AfterSent | None:
    """Deliver the message ``entry.payload["message_id"]`` (see the module docstring)."""
    clock, settings = context.clock, context.settings
    message_id = int(entry.payload["message_id"])
    # reads only: on SQLite this does not take the write lock while composing
    with read_connection(context.engine) as conn:
        message = _load(conn, message_id)
        if message is None:
            return None  # cancelled, skipped or already delivered
        refusal = may_send(conn, message.contact_id, message.category)
        if refusal is not None:
            return _skip(message.id, refusal)
        now = clock.now()
        if message.category == "marketing":
            zone = contact_zone(message.time_zone, settings.zone)
            until = quiet_until(now, zone, parse_quiet_hours(settings.email_quiet_hours))
            if until is not None:
                return _defer(clock, message, until)
            if over_frequency_cap(
                conn,
                message.contact_id,
                now,
                cap=settings.email_frequency_cap,
                days=settings.email_frequency_days,
            ):
                return _skip(message.id, FREQUENCY_CAP)
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


register_handler("email", deliver_email, on_failed=record_failure)
