"""Who may receive which email (特定電子メール法, RFC 8058, the 2024 bulk-sender rules).

Two categories of email:
- ``marketing`` needs opt-in consent on record (``email_consent == "granted"``), no opt-out
  (``unsubscribed_at``) and no suppression;
- ``transactional`` (a requested document's link, a password reset) does not need marketing
  consent and ignores the marketing opt-out, but never goes to a suppressed address.

Subscription topics (``ekiden.messaging.topics``): a marketing template may belong to a topic;
given the template, marketing mail also needs the contact to be subscribed to that topic (their
own choice, else the topic's default). Transactional mail ignores topics.

``may_send`` answers for one contact and is called twice by the sender: when a message is
enqueued and again right before delivery, so an unsubscribe (from everything or from a topic)
takes effect at once, also for messages already queued. ``mailable`` is the same rule as a SQL
condition for whole audiences; a property test holds the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    String,
    and_,
    bindparam,
    false,
    func,
    literal,
    not_,
    select,
)

from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid
from ekiden.messaging.tables import (
    email_template_topics,
    email_templates,
    email_topic_choices,
    email_topics,
)

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
TOPIC_UNSUBSCRIBED = "topic_unsubscribed"  # not subscribed to the template's topic


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
    suppression_reason, merged_into_id and, when selected, ``topic_refused``) may not get
    ``category`` mail; None when it may."""
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
    if getattr(row, "topic_refused", False):
        return TOPIC_UNSUBSCRIBED
    return None


def topic_refused(template: str | BindParameter[str]) -> ColumnElement[bool]:
    """A condition over ``contacts``: the contact is not subscribed to the topic of template
    ``template`` (their choice, else the topic's default). False when the template has no
    topic or does not exist. Index lookups only, so it is cheap per message and per batch."""
    chosen = email_topic_choices.c
    joined = (
        email_templates.join(
            email_template_topics, email_template_topics.c.template_id == email_templates.c.id
        )
        .join(email_topics, email_topics.c.id == email_template_topics.c.topic_id)
        .outerjoin(
            email_topic_choices,
            and_(chosen.topic_id == email_topics.c.id, chosen.contact_id == contacts.c.id),
        )
    )
    subscribed = func.coalesce(chosen.subscribed, email_topics.c.default_subscribed)
    return (
        select(literal(1))
        .select_from(joined)
        .where(email_templates.c.key == template, subscribed == false())
        .correlate(contacts)
        .exists()
    )


_COLUMNS = (
    contacts.c.id,
    contacts.c.email,
    contacts.c.email_consent,
    contacts.c.unsubscribed_at,
    contacts.c.suppressed_at,
    contacts.c.suppression_reason,
    contacts.c.merged_into_id,
)


def _columns(category: str, template: str | None) -> tuple[Any, ...]:
    if template is None or check_category(category) == "transactional":
        return _COLUMNS
    return (*_COLUMNS, topic_refused(template).label("topic_refused"))


# Built once: the sender asks for every message, and building the statement would cost more
# than running it.
_ONE = select(*_COLUMNS).where(contacts.c.id == bindparam("contact_id"))
_ONE_IN_TOPIC = select(
    *_COLUMNS, topic_refused(bindparam("template", type_=String)).label("topic_refused")
).where(contacts.c.id == bindparam("contact_id"))


def may_send(
    conn: Connection, contact_id: int, category: str, *, template: str | None = None
) -> str | None:
    """None when ``category`` email may go to the contact now; otherwise the reason code:
    unknown_contact, no_email, hard_bounced, suppressed, unsubscribed, no_consent or — for a
    marketing ``template`` that belongs to a topic — topic_unsubscribed. One query.
    Raises Invalid for a category other than marketing | transactional."""
    if check_category(category) == "transactional" or template is None:
        row = conn.execute(_ONE, {"contact_id": contact_id}).first()
    else:
        row = conn.execute(_ONE_IN_TOPIC, {"contact_id": contact_id, "template": template}).first()
    return refusal(row, category)


def may_send_many(
    conn: Connection, contact_ids: Iterable[int], category: str, *, template: str | None = None
) -> dict[int, str | None]:
    """``may_send`` for many contacts in few queries (one per 500 contacts)."""
    check_category(category)
    columns = _columns(category, template)
    wanted = list(dict.fromkeys(contact_ids))
    rows: dict[int, Any] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for row in conn.execute(select(*columns).where(contacts.c.id.in_(chunk))):
            rows[row.id] = row
    return {cid: refusal(rows.get(cid), category) for cid in wanted}


def mailable(category: str, *, template: str | None = None) -> ColumnElement[bool]:
    """A condition over ``contacts`` that holds exactly when ``may_send`` (with the same
    ``template``) answers None."""
    base = and_(
        contacts.c.merged_into_id.is_(None),
        contacts.c.email.is_not(None),
        contacts.c.email != "",
        contacts.c.suppressed_at.is_(None),
    )
    if check_category(category) == "transactional":
        return base
    marketing = and_(
        base,
        contacts.c.unsubscribed_at.is_(None),
        contacts.c.email_consent == "granted",
    )
    if template is None:
        return marketing
    return and_(marketing, not_(topic_refused(template)))
