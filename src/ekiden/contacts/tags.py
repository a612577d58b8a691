"""Tags on contacts: free-form labels ("展示会2026", "vip") a marketer attaches by hand,
by import or by a journey action."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.contacts.tables import contact_tags, contacts
from ekiden.errors import Invalid
from ekiden.segments.dirty import mark_dirty

MAX_TAG_LENGTH = 100


def clean_tag(raw: str) -> str:
    """The tag as stored (trimmed, NFC); Invalid when empty, too long or holding control chars."""
    tag = unicodedata.normalize("NFC", raw.strip())
    if not tag:
        raise Invalid("a tag must not be empty", code="invalid_tag", details={"tag": raw})
    if len(tag) > MAX_TAG_LENGTH:
        raise Invalid(
            f"a tag is at most {MAX_TAG_LENGTH} characters, this one has {len(tag)}",
            code="invalid_tag",
            details={"tag": raw},
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in tag):
        raise Invalid(
            "a tag must not contain control characters", code="invalid_tag", details={"tag": raw}
        )
    return tag


def add_tags(conn: Connection, clock: Clock, contact_id: int, tags: Iterable[str]) -> list[str]:
    """Attach ``tags`` to the contact; tags it already has are kept as they are.

    Every tag is validated before anything is written (Invalid names the bad one).
    Returns the tags that were newly attached. The caller makes sure the contact is live.
    """
    cleaned = list(dict.fromkeys(clean_tag(t) for t in tags))
    if not cleaned:
        return []
    existing = set(tags_of(conn, contact_id))
    new = [t for t in cleaned if t not in existing]
    if new:
        now = clock.now()
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(
            dialect.insert(contact_tags).on_conflict_do_nothing(),
            [{"contact_id": contact_id, "tag": t, "created_at": now} for t in new],
        )
        _touch(conn, clock, contact_id)
    return new


def remove_tag(conn: Connection, clock: Clock, contact_id: int, tag: str) -> bool:
    """Detach ``tag``; returns False when the contact did not have it."""
    removed = conn.execute(
        delete(contact_tags).where(
            contact_tags.c.contact_id == contact_id, contact_tags.c.tag == clean_tag(tag)
        )
    ).rowcount
    if removed:
        _touch(conn, clock, contact_id)
    return bool(removed)


def tags_of(conn: Connection, contact_id: int) -> list[str]:
    """The contact's tags in alphabetical order."""
    return list(
        conn.execute(
            select(contact_tags.c.tag)
            .where(contact_tags.c.contact_id == contact_id)
            .order_by(contact_tags.c.tag)
        ).scalars()
    )


def _touch(conn: Connection, clock: Clock, contact_id: int) -> None:
    # A tag change is a change of the contact: `updated_since` searches must see it.
    conn.execute(update(contacts).where(contacts.c.id == contact_id).values(updated_at=clock.now()))
    mark_dirty(conn, clock, [contact_id])
