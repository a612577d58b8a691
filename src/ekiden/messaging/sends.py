"""Sends: one email template (a pinned version) to an audience, now or at a set time.

Creating a send stores only the decision. The worker's "sends" step writes the audience out
in batches of ``BATCH`` contacts: each batch writes the contacts' ``email_messages`` rows and
their outbox rows (kind "email") in one transaction, together with the send's cursor (the
last contact id written). A crash between batches resumes at the cursor; the unique keys
(send id, contact id) and ``email:<send>:<contact>`` make a re-run write nothing twice.

Contacts that may not get the mail now (``may_send``) get a ``skipped`` message with the
reason and no outbox row; the handler asks ``may_send`` again right before delivery.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Connection, Engine, RowMapping, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.tables import contacts
from ekiden.errors import Conflict, EkidenError, Invalid, NotFound
from ekiden.messaging.compliance import check_category, may_send_many
from ekiden.messaging.sending import pinned_template
from ekiden.messaging.sends_models import AbTest, Audience, Send, SendIn
from ekiden.messaging.sends_tables import email_messages, email_sends
from ekiden.outbox import service as outbox
from ekiden.rules.sql import SqlEnv, compile_filter
from ekiden.segments.service import validate_filter

log = logging.getLogger("ekiden.messaging")

BATCH = 1000
ACTIVE = ("scheduled", "sending", "testing")


def _audience_filter(audience: Audience) -> dict[str, Any] | None:
    if audience.list is not None:
        return {"list": audience.list}
    if audience.segment is not None:
        return {"segment": audience.segment}
    return audience.filter


def audience_condition(
    conn: Connection, clock: Clock, audience: dict[str, Any], zone: ZoneInfo
) -> ColumnElement[bool]:
    """A condition over ``contacts`` selecting the audience; Invalid naming a bad part."""
    parsed = Audience.model_validate(audience)
    if parsed.contact is not None:
        return contacts.c.id == parsed.contact
    raw = _audience_filter(parsed)
    try:
        flt, catalog = validate_filter(conn, raw, zone)
    except Invalid as exc:
        raise Invalid(
            f"audience: {exc.message}", code=exc.code, details={"audience": exc.details}
        ) from None
    env = SqlEnv(catalog=catalog, now=clock.now(), zone=zone, dialect=conn.dialect.name)
    return compile_filter(flt, env)


def _to_model(row: RowMapping) -> Send:
    return Send(
        id=row["id"],
        name=row["name"],
        template=row["template_key"],
        template_version=row["template_version"],
        category=row["category"],
        audience=row["audience"],
        status=row["status"],
        scheduled_at=row["scheduled_at"],
        created_at=row["created_at"],
        dispatched_at=row["dispatched_at"],
        cancelled_at=row["cancelled_at"],
        error=row["error"],
        recipients=row["recipients"],
        ab=row["ab"],
        ab_winner=row["ab_winner"],
        ab_decided_at=row["ab_decided_at"],
        ab_result=row["ab_result"],
    )


def create_send(conn: Connection, clock: Clock, settings: Settings, data: SendIn) -> Send:
    """Store a send; it goes out when ``scheduled_at`` (default now) comes. Raises NotFound
    for an unknown template or version and Invalid for a bad audience or A/B test."""
    now = clock.now()
    version, template_category = pinned_template(conn, data.template, data.template_version)
    category = check_category(data.category or template_category)
    audience = data.audience.model_dump(exclude_none=True)
    audience_condition(conn, clock, audience, settings.zone)  # validates slugs and filter
    if data.audience.contact is not None:
        found = conn.execute(
            select(contacts.c.id).where(
                contacts.c.id == data.audience.contact, contacts.c.merged_into_id.is_(None)
            )
        ).first()
        if found is None:
            raise NotFound(f"no contact {data.audience.contact}", details={"field": "audience"})
    if data.ab is not None:
        for variant in data.ab.variants:
            if variant.template_version is not None:
                pinned_template(conn, data.template, variant.template_version)
            elif variant.subject is None:
                raise Invalid(
                    f"A/B variant {variant.name!r} needs a subject or a template_version",
                    details={"field": "ab.variants"},
                )
    when = data.scheduled_at or now
    if when.tzinfo is None:
        raise Invalid("scheduled_at needs a time zone offset", details={"field": "scheduled_at"})
    new_id = conn.execute(
        email_sends.insert()
        .values(
            name=data.name,
            template_key=data.template,
            template_version=version,
            category=category,
            audience=audience,
            status="scheduled",
            scheduled_at=when,
            created_at=now,
            cursor=0,
            recipients=0,
            ab=None if data.ab is None else data.ab.model_dump(mode="json"),
        )
        .returning(email_sends.c.id)
    ).scalar_one()
    return get_send(conn, int(new_id))


def get_send(conn: Connection, send_id: int) -> Send:
    row = conn.execute(select(email_sends).where(email_sends.c.id == send_id)).mappings().first()
    if row is None:
        raise NotFound(f"no send {send_id}")
    return _to_model(row)


def list_sends(conn: Connection, *, before: int | None, limit: int) -> list[Send]:
    """Newest first; ``before`` continues after the send with that id."""
    query = select(email_sends).order_by(email_sends.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(email_sends.c.id < before)
    return [_to_model(r) for r in conn.execute(query).mappings()]


def cancel_send(conn: Connection, clock: Clock, send_id: int) -> Send:
    """Stop a send that has not finished: queued and held messages become skipped
    ("cancelled") and their outbox rows are cancelled. Conflict when it already went out."""
    send = get_send(conn, send_id)
    if send.status not in ACTIVE:
        raise Conflict(f"send {send_id} is {send.status}; only an unfinished send can be cancelled")
    conn.execute(
        update(email_sends)
        .where(email_sends.c.id == send_id)
        .values(status="cancelled", cancelled_at=clock.now())
    )
    pending = conn.execute(
        select(email_messages.c.id, email_messages.c.contact_id).where(
            email_messages.c.send_id == send_id,
            email_messages.c.status.in_(("queued", "held")),
        )
    ).all()
    for row in pending:
        outbox.cancel(conn, key=outbox_key(send_id, row.contact_id))
    conn.execute(
        update(email_messages)
        .where(
            email_messages.c.send_id == send_id,
            email_messages.c.status.in_(("queued", "held")),
        )
        .values(status="skipped", reason="cancelled")
    )
    return get_send(conn, send_id)


def outbox_key(send_id: int, contact_id: int) -> str:
    return f"email:{send_id}:{contact_id}"


def message_key(send_id: int, contact_id: int) -> str:
    return f"send:{send_id}:{contact_id}"


def ab_assignment(send_id: int, contact_id: int, ab: AbTest) -> str | None:
    """The variant of a contact in the test share, or None for the remainder (which gets the
    winner). Deterministic, so a resumed batch assigns the same way."""
    digest = hashlib.blake2b(f"{send_id}:{contact_id}".encode(), digest_size=8).digest()
    position = int.from_bytes(digest, "big") / 2**64
    if position >= ab.test_share:
        return None
    return ab.variants[int(position / ab.test_share * len(ab.variants))].name


def _claim_due(conn: Connection, now: datetime) -> RowMapping | None:
    query = (
        select(email_sends)
        .where(
            email_sends.c.status.in_(("scheduled", "sending")), email_sends.c.scheduled_at <= now
        )
        .order_by(email_sends.c.scheduled_at, email_sends.c.id)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).mappings().first()


def dispatch_due(engine: Engine, clock: Clock, settings: Settings) -> int:
    """The worker's "sends" step: write one batch of one due send; returns the number of
    messages written (a finished send counts 1, so the worker comes back)."""
    with engine.begin() as conn:
        send = _claim_due(conn, clock.now())
        if send is None:
            return 0
        try:
            with conn.begin_nested():
                return max(write_batch(conn, clock, settings, send), 1)
        except EkidenError as exc:  # e.g. its segment was archived after the send was made
            log.warning("send %d failed: %s", send["id"], exc.message)
            conn.execute(
                update(email_sends)
                .where(email_sends.c.id == send["id"])
                .values(status="failed", error=exc.message)
            )
            return 1


def write_batch(conn: Connection, clock: Clock, settings: Settings, send: RowMapping) -> int:
    """Write the next batch of the send's audience (messages + outbox rows); when none is
    left, mark the send sent (or testing, with an A/B test). Returns messages written."""
    now = clock.now()
    condition = audience_condition(conn, clock, send["audience"], settings.zone)
    ids = list(
        conn.execute(
            select(contacts.c.id)
            .where(
                condition,
                contacts.c.id > send["cursor"],
                contacts.c.merged_into_id.is_(None),
                contacts.c.email.is_not(None),
            )
            .order_by(contacts.c.id)
            .limit(BATCH)
        ).scalars()
    )
    if not ids:
        done = "testing" if send["ab"] else "sent"
        conn.execute(
            update(email_sends)
            .where(email_sends.c.id == send["id"])
            .values(status=done, dispatched_at=now)
        )
        return 0
    written = _write_messages(conn, clock, send, ids)
    conn.execute(
        update(email_sends)
        .where(email_sends.c.id == send["id"])
        .values(
            status="sending",
            cursor=max(ids),
            recipients=email_sends.c.recipients + written,
        )
    )
    return written


def _write_messages(conn: Connection, clock: Clock, send: RowMapping, ids: Sequence[int]) -> int:
    now = clock.now()
    send_id = int(send["id"])
    refusals = may_send_many(conn, ids, send["category"], template=send["template_key"])
    ab = None if send["ab"] is None else AbTest.model_validate(send["ab"])
    versions = {v.name: v.template_version for v in ab.variants} if ab else {}
    rows: list[dict[str, Any]] = []
    for contact_id in ids:
        reason = refusals[contact_id]
        variant = ab_assignment(send_id, contact_id, ab) if ab else None
        status = "skipped" if reason else ("held" if ab and variant is None else "queued")
        rows.append(
            {
                "send_id": send_id,
                "contact_id": contact_id,
                "key": message_key(send_id, contact_id),
                "template_key": send["template_key"],
                "template_version": versions.get(variant or "") or send["template_version"],
                "category": send["category"],
                "variant": variant,
                "status": status,
                "reason": reason,
                "queued_at": now,
            }
        )
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(email_messages).on_conflict_do_nothing(index_elements=["key"]), rows
    )
    queued = conn.execute(
        select(email_messages.c.id, email_messages.c.contact_id).where(
            email_messages.c.send_id == send_id,
            email_messages.c.contact_id.in_(ids),
            email_messages.c.status == "queued",
        )
    ).all()
    enqueue_messages(conn, clock, send_id, queued)
    return len(rows)


def enqueue_messages(conn: Connection, clock: Clock, send_id: int, queued: Sequence[Any]) -> None:
    """Outbox rows for queued messages (rows with ``id`` and ``contact_id``)."""
    for message in queued:
        outbox.enqueue(
            conn,
            clock,
            kind="email",
            key=outbox_key(send_id, message.contact_id),
            payload={"message_id": int(message.id)},
            contact_id=int(message.contact_id),
        )
