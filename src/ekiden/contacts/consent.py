"""Consent to marketing email (特定電子メール法: opt-in with evidence) and the opt-out flags.

Three separate facts are kept:
- ``email_consent`` (none | granted | withdrawn) is the latest consent decision; every decision
  is a row in ``consents`` with its evidence (source, text shown, IP, user agent).
- ``unsubscribed_at`` is the recipient's own opt-out; unsubscribing also records a withdrawal.
- ``suppressed_at`` + reason is the operator's block (bounces, complaints, legal requests).
Marketing mail may go only to contacts with granted consent, not unsubscribed, not suppressed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Connection, insert, select, update

from ekiden.clock import Clock
from ekiden.contacts.service import contact_not_found
from ekiden.contacts.tables import consents, contacts
from ekiden.errors import Invalid
from ekiden.segments.dirty import mark_dirty

ConsentStatus = Literal["granted", "withdrawn"]
CONSENT_STATUSES = ("granted", "withdrawn")
CONSENT_SOURCES = ("form", "import", "api", "unsubscribe")


class ConsentRecord(BaseModel):
    """One consent decision with its evidence."""

    id: int
    contact_id: int
    channel: str
    status: str
    source: str
    source_ref: str | None
    text_shown: str | None
    ip: str | None
    user_agent: str | None
    recorded_at: datetime


def record_consent(
    conn: Connection,
    clock: Clock,
    contact_id: int,
    *,
    status: str,
    source: str,
    source_ref: str | None = None,
    text_shown: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> ConsentRecord:
    """Store a consent decision and make it the contact's current ``email_consent``.

    ``status`` is granted | withdrawn; ``source`` is form | import | api | unsubscribe;
    ``source_ref`` names the form slug, import id or API key. Raises Invalid for another
    status or source and NotFound when the contact is unknown or merged away.
    """
    if status not in CONSENT_STATUSES:
        raise Invalid(f"consent status must be granted or withdrawn, not {status!r}")
    if source not in CONSENT_SOURCES:
        raise Invalid(f"consent source must be one of {', '.join(CONSENT_SOURCES)}")
    now = clock.now()
    changed = conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id, contacts.c.merged_into_id.is_(None))
        .values(email_consent=status, updated_at=now)
    ).rowcount
    if not changed:
        raise contact_not_found(conn, contact_id)
    mark_dirty(conn, clock, [contact_id])
    values: dict[str, Any] = {
        "contact_id": contact_id,
        "channel": "email",
        "status": status,
        "source": source,
        "source_ref": source_ref,
        "text_shown": text_shown,
        "ip": ip,
        "user_agent": user_agent,
        "recorded_at": now,
    }
    new_id = conn.execute(insert(consents).values(**values).returning(consents.c.id)).scalar_one()
    return ConsentRecord.model_validate({"id": new_id, **values})


def consent_history(conn: Connection, contact_id: int) -> list[ConsentRecord]:
    """Every consent decision of the contact, newest first."""
    rows = conn.execute(
        select(consents)
        .where(consents.c.contact_id == contact_id)
        .order_by(consents.c.recorded_at.desc(), consents.c.id.desc())
    ).mappings()
    return [ConsentRecord.model_validate(dict(r)) for r in rows]


def unsubscribe(
    conn: Connection,
    clock: Clock,
    contact_id: int,
    *,
    source: str = "unsubscribe",
    source_ref: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> bool:
    """Mark the contact unsubscribed and record the withdrawal of consent.

    Idempotent: returns False (and records nothing) when the contact already was unsubscribed,
    so the first opt-out's time is kept.
    """
    row = _live_row(conn, contact_id)
    if row.unsubscribed_at is not None:
        return False
    conn.execute(
        update(contacts).where(contacts.c.id == contact_id).values(unsubscribed_at=clock.now())
    )
    mark_dirty(conn, clock, [contact_id])
    record_consent(
        conn,
        clock,
        contact_id,
        status="withdrawn",
        source=source,
        source_ref=source_ref,
        ip=ip,
        user_agent=user_agent,
    )
    return True


def resubscribe(conn: Connection, clock: Clock, contact_id: int) -> None:
    """Clear the opt-out flag. This is not consent: mail still needs a granted decision."""
    _live_row(conn, contact_id)
    conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id)
        .values(unsubscribed_at=None, updated_at=clock.now())
    )
    mark_dirty(conn, clock, [contact_id])


def suppress(conn: Connection, clock: Clock, contact_id: int, *, reason: str) -> None:
    """Block all email to the contact (bounce, complaint, legal request) with the reason."""
    if not reason.strip():
        raise Invalid("a suppression needs a reason")
    row = _live_row(conn, contact_id)
    now = clock.now()
    conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id)
        .values(
            suppressed_at=row.suppressed_at or now,
            suppression_reason=reason.strip(),
            updated_at=now,
        )
    )
    mark_dirty(conn, clock, [contact_id])


def unsuppress(conn: Connection, clock: Clock, contact_id: int) -> None:
    """Lift a suppression."""
    _live_row(conn, contact_id)
    conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id)
        .values(suppressed_at=None, suppression_reason=None, updated_at=clock.now())
    )
    mark_dirty(conn, clock, [contact_id])


def _live_row(conn: Connection, contact_id: int) -> Any:
    row = conn.execute(
        select(contacts.c.unsubscribed_at, contacts.c.suppressed_at).where(
            contacts.c.id == contact_id, contacts.c.merged_into_id.is_(None)
        )
    ).first()
    if row is None:
        raise contact_not_found(conn, contact_id)
    return row
