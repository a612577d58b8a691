"""Single messages: ``send_email`` queues one template to one contact (journeys, hand-offs).

Every email, of a send or single, is one ``email_messages`` row plus one outbox row of kind
"email" written in the caller's transaction; the outbox handler (``handler.py``) renders and
delivers it. The row's id is the message's identity everywhere: the ``send_id`` property of
its email events, its tracking tokens, and its stable Message-ID header
(``<ekiden.{id}@{host}>``, the same on every delivery attempt).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.service import contact_not_found, require_live_contact
from ekiden.contacts.tables import contacts
from ekiden.errors import NotFound
from ekiden.messaging.compliance import check_category
from ekiden.messaging.sends_tables import email_messages
from ekiden.messaging.tables import email_template_versions, email_templates
from ekiden.outbox import service as outbox


def pinned_template(conn: Connection, key: str, version: int | None) -> tuple[int, str]:
    """(version, category) of template ``key``: ``version`` when given, else the current
    one. NotFound for an unknown or archived template or a version it never had."""
    template = conn.execute(
        select(email_templates.c.id, email_templates.c.version, email_templates.c.category).where(
            email_templates.c.key == key, email_templates.c.archived_at.is_(None)
        )
    ).first()
    if template is None:
        raise NotFound(f"no email template {key!r}", details={"field": "template"})
    if version is None:
        return int(template.version), str(template.category)
    found = conn.execute(
        select(email_template_versions.c.category).where(
            email_template_versions.c.template_id == template.id,
            email_template_versions.c.version == version,
        )
    ).first()
    if found is None:
        raise NotFound(
            f"email template {key!r} has no version {version}",
            details={"field": "template_version"},
        )
    return version, str(found.category)


def send_email(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    *,
    template: str,
    contact_id: int,
    key: str,
    category: str,
) -> int | None:
    """Queue template ``template`` (its current version, pinned now) to one contact, in the
    caller's transaction. ``key`` is the caller's idempotency key (e.g.
    ``journey:<run>:<step>``): a second call with the same key writes nothing and returns
    None; otherwise returns the new message's id.

    Consent, quiet hours and caps are checked when the message is delivered, not here: a
    contact who may not get it then gets a ``skipped`` message with the reason. Raises
    NotFound for an unknown template or contact and Invalid for a category other than marketing |
    transactional.
    """
    del settings  # part of the contract: delivery-time settings may matter here later
    check_category(category)
    require_live_contact(conn, contact_id)
    version, _ = pinned_template(conn, template, None)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    new_id = conn.execute(
        dialect.insert(email_messages)
        .values(
            send_id=None,
            contact_id=contact_id,
            key=key,
            template_key=template,
            template_version=version,
            category=category,
            status="queued",
            queued_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(email_messages.c.id)
    ).scalar_one_or_none()
    if new_id is None:
        return None
    outbox.enqueue(
        conn,
        clock,
        kind="email",
        key=f"email:{key}",
        payload={"message_id": int(new_id)},
        contact_id=contact_id,
    )
    return int(new_id)


def send_emails(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    *,
    template: str,
    category: str,
    recipients: Sequence[tuple[int, str]],
) -> dict[str, int]:
    """``send_email`` for many contacts at once: ``recipients`` are (contact id, idempotency
    key) pairs. Writes the new messages and their outbox rows in the caller's transaction with
    a few statements per 500 recipients (``outbox.enqueue_many``), and returns
    ``{key: new message id}`` for the keys not used before (keys used before, or repeated in
    ``recipients``, write nothing and are absent). Raises NotFound (nothing written) for an
    unknown template or an unknown or merged contact, Invalid for a bad category."""
    del settings
    check_category(category)
    version, _ = pinned_template(conn, template, None)
    wanted = list(dict.fromkeys(contact_id for contact_id, _ in recipients))
    live: set[int] = set()
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        live.update(
            conn.execute(
                select(contacts.c.id).where(
                    contacts.c.id.in_(chunk), contacts.c.merged_into_id.is_(None)
                )
            ).scalars()
        )
    missing = [contact_id for contact_id in wanted if contact_id not in live]
    if missing:
        raise contact_not_found(conn, missing[0])
    pairs = list({key: contact_id for contact_id, key in reversed(recipients)}.items())[::-1]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    now = clock.now()
    created: dict[str, int] = {}
    for start in range(0, len(pairs), 500):
        rows = [
            {
                "send_id": None,
                "contact_id": contact_id,
                "key": key,
                "template_key": template,
                "template_version": version,
                "category": category,
                "status": "queued",
                "queued_at": now,
            }
            for key, contact_id in pairs[start : start + 500]
        ]
        inserted = conn.execute(
            dialect.insert(email_messages)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(email_messages.c.id, email_messages.c.key, email_messages.c.contact_id)
        ).all()
        outbox.enqueue_many(
            conn,
            clock,
            [
                outbox.NewEntry(
                    kind="email",
                    key=f"email:{row.key}",
                    payload={"message_id": int(row.id)},
                    contact_id=int(row.contact_id),
                )
                for row in inserted
            ],
        )
        created.update({str(row.key): int(row.id) for row in inserted})
    return created
