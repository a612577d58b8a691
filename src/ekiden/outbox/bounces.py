"""Acting on bounce reports: suppress hard bounces and complaints, count soft bounces.

Which message a report is about comes, in this order, from the VERP address it was sent to
(``bounces+ID-SIG@…``, see ``verp.py``), then from the original Message-ID it quotes (the
outbox keeps the Message-ID of every email it sent); the contact is that message's contact,
else the contact with the failed recipient's address.

- hard bounce (``Action: failed`` with a 5.x.x status): the contact is suppressed
  ("hard_bounce") and ``email_bounced`` is recorded with ``bounce: "hard"``;
- soft bounce (``Action: failed`` with 4.x.x): ``email_bounced`` with ``bounce: "soft"``; the
  ``soft_bounce_limit``-th soft bounce within ``soft_bounce_days`` suppresses ("soft_bounces");
- complaint (ARF): the contact is suppressed ("complaint"), ``email_complained`` recorded.

Events carry ``send_id`` and ``email`` (the template key) when the message is known, and a
message id derived from the report, so ingesting the same report twice records it once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, select

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.consent import suppress
from ekiden.contacts.service import find_contact_id, live_contact_id
from ekiden.errors import Invalid
from ekiden.outbox.dsn import Report, parse_report
from ekiden.outbox.models import OutboxEntry
from ekiden.outbox.service import entry_by_id
from ekiden.outbox.tables import outbox
from ekiden.outbox.verp import entry_id_from_address
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events


class BounceOutcome(BaseModel):
    """What one report did, per recipient."""

    kind: str  # hard | soft | complaint
    recipient: str | None
    status: str | None
    contact_id: int | None
    send_id: str | None
    suppressed: bool


class IngestResult(BaseModel):
    items: list[BounceOutcome]


@dataclass
class _Target:
    contact_id: int | None = None
    entry: OutboxEntry | None = None
    properties: dict[str, Any] = field(default_factory=dict)


def ingest_report(
    conn: Connection, clock: Clock, settings: Settings, raw: bytes, *, recipient: str | None = None
) -> IngestResult:
    """Parse ``raw`` (one RFC 5322 message) and act on it; ``recipient`` is the envelope
    recipient when the MTA passes it (the VERP address). Raises Invalid when ``raw`` is not a
    DSN or ARF report; nothing is stored then."""
    reports = parse_report(raw)
    digest = hashlib.sha256(raw).hexdigest()[:24]
    outcomes = []
    for number, report in enumerate(reports):
        target = _target(conn, settings, report, recipient)
        outcomes.append(_apply(conn, clock, settings, report, target, f"{digest}:{number}"))
    return IngestResult(items=outcomes)


def _target(conn: Connection, settings: Settings, report: Report, recipient: str | None) -> _Target:
    entry = None
    for address in ([recipient] if recipient else []) + list(report.addressed_to):
        entry_id = entry_id_from_address(settings, address)
        if entry_id is not None:
            entry = entry_by_id(conn, entry_id)
            break
    if entry is None and report.original_message_id:
        found = conn.execute(
            select(outbox.c.id).where(outbox.c.message_id == report.original_message_id).limit(1)
        ).scalar_one_or_none()
        entry = entry_by_id(conn, int(found)) if found is not None else None
    contact_id = live_contact_id(conn, entry.contact_id) if entry and entry.contact_id else None
    if contact_id is None and report.recipient:
        try:
            contact_id = find_contact_id(conn, email=report.recipient)
        except Invalid:
            contact_id = None
    return _Target(contact_id, entry, _message_properties(conn, entry))


def _message_properties(conn: Connection, entry: OutboxEntry | None) -> dict[str, Any]:
    """``send_id`` and ``email`` of the email the entry delivered (kind "email")."""
    if entry is None or entry.kind != "email" or "message_id" not in entry.payload:
        return {}
    from ekiden.messaging.sends_tables import email_messages

    message_id = int(entry.payload["message_id"])
    template_key = conn.execute(
        select(email_messages.c.template_key).where(email_messages.c.id == message_id)
    ).scalar_one_or_none()
    properties: dict[str, Any] = {"send_id": str(message_id)}
    if template_key is not None:
        properties["email"] = template_key
    return properties


def _apply(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    report: Report,
    target: _Target,
    dedup: str,
) -> BounceOutcome:
    outcome = BounceOutcome(
        kind=report.kind,
        recipient=report.recipient,
        status=report.status,
        contact_id=target.contact_id,
        send_id=target.properties.get("send_id"),
        suppressed=False,
    )
    if target.contact_id is None:
        return outcome  # about nobody we know: nothing to record
    properties = dict(target.properties)
    event_type = "email_complained" if report.kind == "complaint" else "email_bounced"
    if report.kind == "complaint":
        properties["feedback_type"] = report.action
    else:
        properties |= {"bounce": report.kind, "status": report.status}
        if report.diagnostic:
            properties["diagnostic"] = report.diagnostic
    if report.recipient:
        properties["recipient"] = report.recipient
    now = clock.now()
    record_events(
        conn,
        clock,
        [
            NewEvent(
                type=event_type,
                occurred_at=now,
                source="email",
                contact_id=target.contact_id,
                properties=properties,
                message_id=f"{event_type}:{dedup}",
            )
        ],
    )
    reason = _suppression_reason(conn, clock, settings, report, target.contact_id)
    if reason is not None:
        suppress(conn, clock, target.contact_id, reason=reason)
        outcome.suppressed = True
    return outcome


def _suppression_reason(
    conn: Connection, clock: Clock, settings: Settings, report: Report, contact_id: int
) -> str | None:
    if report.kind == "complaint":
        return "complaint"
    if report.kind == "hard":
        return "hard_bounce"
    if settings.soft_bounce_limit <= 0:
        return None
    since = clock.now() - timedelta(days=settings.soft_bounce_days)
    recent = conn.execute(
        select(events.c.properties).where(
            events.c.contact_id == contact_id,
            events.c.type == "email_bounced",
            events.c.occurred_at >= since,
        )
    ).scalars()
    soft = sum(1 for props in recent if (props or {}).get("bounce") == "soft")
    return "soft_bounces" if soft >= settings.soft_bounce_limit else None
