"""Identity resolution: anonymous ids (one per browser / device) and user ids -> contacts."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.contacts.service import live_contact_id
from ekiden.contacts.tables import identities
from ekiden.segments.dirty import mark_dirty
from ekiden.tracking.events import attribute_anonymous_events


def contacts_for_anonymous_ids(conn: Connection, anonymous_ids: Iterable[str]) -> dict[str, int]:
    """Which of these anonymous ids belong to a known contact (one query per call)."""
    wanted = list({a for a in anonymous_ids if a})
    if not wanted:
        return {}
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = conn.execute(
            select(identities.c.value, identities.c.contact_id).where(
                identities.c.kind == "anonymous_id", identities.c.value.in_(chunk)
            )
        )
        found.update({row.value: row.contact_id for row in rows})
    return found


def link_anonymous_id(
    conn: Connection,
    clock: Clock,
    anonymous_id: str,
    contact_id: int,
    *,
    device: str | None = None,
) -> int:
    """Record that ``anonymous_id`` is ``contact_id``'s browser and give it its earlier
    anonymous events. Returns how many past events joined the contact.

    When the browser was someone else's before (a shared PC), later events go to the newly
    identified contact; events already attributed stay with the person who made them.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(identities)
        .values(
            kind="anonymous_id",
            value=anonymous_id,
            contact_id=contact_id,
            device=device,
            created_at=clock.now(),
        )
        .on_conflict_do_update(index_elements=["kind", "value"], set_={"contact_id": contact_id})
    )
    moved = attribute_anonymous_events(conn, anonymous_id, contact_id)
    if moved:
        mark_dirty(conn, clock, [contact_id])
    return moved


def add_identity(conn: Connection, clock: Clock, kind: str, value: str, contact_id: int) -> None:
    """Remember another identifier of the contact (an email or user id absorbed by a merge)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(identities)
        .values(kind=kind, value=value, contact_id=contact_id, created_at=clock.now())
        .on_conflict_do_update(index_elements=["kind", "value"], set_={"contact_id": contact_id})
    )


def move_identities(conn: Connection, from_contact: int, to_contact: int) -> None:
    conn.execute(
        update(identities)
        .where(identities.c.contact_id == from_contact)
        .values(contact_id=to_contact)
    )


def resolve(conn: Connection, contact_id: int | None) -> int | None:
    return None if contact_id is None else live_contact_id(conn, contact_id)
