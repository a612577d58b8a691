"""Who may receive which email (特定電子メール法, RFC 8058, the 2024 bulk-sender rules).

Two categories of email:
- ``marketing`` needs opt-in consent on record (``email_consent == "granted"``), no opt-out
  (``unsubscribed_at``) and no suppression;
- ``transactional`` (a requested document's link, a password reset) does not need marketing
  consent and ignores the marketing opt-out, but never goes to a suppressed address.

``may_send`` answers for one contact and is called twice by the sender: when a message is
enqueued and again right before delivery, so an unsubscribe takes effect at once, also for
messages already queued. ``mailable`` is the same rule as a SQL condition for whole audiences;
a property test holds the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, and_, select

from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid

Category = Literal["marketing", "transactional"]
CATEGORIES: tuple[str, ...] = ("marketing", "transactional")

# A suppression whose reason starts with this is a hard bounce (the bounce processor writes it).
HARD_BOUNCE_REASON = "hard_bounce"

# Reason codes, in the order they are checked.
UNKNOWN_CONTACT = "unknown_contact"
NO_EMAIL = "no_email"
HARD_BOUNCED = "hard_bounced"
SUPPRESSED = "suppressed"
UNSUBSCRIBED = "unsubscribed"
NO_CONSENT = "no_consent"


def check_category(category: str) -> Category:
    """The category, or Invalid naming the accepted ones."""
    if category == "marketing":
        return "marketing"
    if category == "transactional":
        return "transactional"
    raise Invalid(
        f"category must be marketing or transactional, not {category!r}",
        details={"field": "category"},
    )


def refusal(row: Any, category: str) -> str | None:
    """Why this contact row (email, email_consent, unsubscribed_at, suppressed_at,
    suppression_reason, merged_into_id) may not get ``category`` mail; None when it may."""
    if row is None or row.merged_into_id is not None:
        return UNKNOWN_CONTACT
    if not row.email:
        return NO_EMAIL
    if row.suppressed_at is not None:
        reason = (row.suppression_reason or "").strip().lower()
        return HARD_BOUNCED if reason.startswith(HARD_BOUNCE_REASON) else SUPPRESSED
    if check_category(category) == "transactional":
        return None
    if row.unsubscribed_at is not None:
        return UNSUBSCRIBED
    if row.email_consent != "granted":
        return NO_CONSENT
    return None


_COLUMNS = (
    contacts.c.id,
    contacts.c.email,
    contacts.c.email_consent,
    contacts.c.unsubscribed_at,
    contacts.c.suppressed_at,
    contacts.c.suppression_reason,
    contacts.c.merged_into_id,
)


def may_send(conn: Connection, contact_id: int, category: str) -> str | None:
    """None when ``category`` email may go to the contact now; otherwise the reason code:
    unknown_contact, no_email, hard_bounced, suppressed, unsubscribed or no_consent.
    Raises Invalid for a category other than marketing | transactional."""
    check_category(category)
    row = conn.execute(select(*_COLUMNS).where(contacts.c.id == contact_id)).first()
    return refusal(row, category)


def may_send_many(
    conn: Connection, contact_ids: Iterable[int], category: str
) -> dict[int, str | None]:
    """``may_send`` for many contacts in few queries."""
    check_category(category)
    wanted = list(dict.fromkeys(contact_ids))
    rows: dict[int, Any] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for row in conn.execute(select(*_COLUMNS).where(contacts.c.id.in_(chunk))):
            rows[row.id] = row
    return {cid: refusal(rows.get(cid), category) for cid in wanted}


def mailable(category: str) -> ColumnElement[bool]:
    """A condition over ``contacts`` that holds exactly when ``may_send`` answers None."""
    base = and_(
        contacts.c.merged_into_id.is_(None),
        contacts.c.email.is_not(None),
        contacts.c.email != "",
        contacts.c.suppressed_at.is_(None),
    )
    if check_category(category) == "transactional":
        return base
    return and_(
        base,
        contacts.c.unsubscribed_at.is_(None),
        contacts.c.email_consent == "granted",
    )
