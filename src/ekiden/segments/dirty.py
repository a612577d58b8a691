"""The queue of contacts whose segment membership must be looked at again.

Every write that can change what a filter sees about a contact marks it here, in the same
transaction; the worker claims marked contacts in batches (``claim_dirty``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.segments.tables import dirty_contacts


def mark_dirty(conn: Connection, clock: Clock, contact_ids: Iterable[int | None]) -> None:
    """Queue these contacts for a segment refresh (already queued ones keep their place)."""
    ids = sorted({i for i in contact_ids if i is not None})
    if not ids:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    now = clock.now()
    conn.execute(
        dialect.insert(dirty_contacts).on_conflict_do_nothing(index_elements=["contact_id"]),
        [{"contact_id": i, "marked_at": now} for i in ids],
    )


def claim_dirty(conn: Connection, limit: int) -> list[int]:
    """Take up to ``limit`` queued contacts off the queue, oldest first.

    On PostgreSQL concurrent workers skip each other's rows (SKIP LOCKED); on SQLite the
    transaction holds the single write lock. If the caller's transaction rolls back, the
    contacts stay queued.
    """
    if conn.dialect.name == "postgresql":
        picked = (
            select(dirty_contacts.c.contact_id)
            .order_by(dirty_contacts.c.marked_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        rows = conn.execute(
            delete(dirty_contacts)
            .where(dirty_contacts.c.contact_id.in_(picked))
            .returning(dirty_contacts.c.contact_id)
        )
        return sorted(rows.scalars())
    ids = list(
        conn.execute(
            select(dirty_contacts.c.contact_id).order_by(dirty_contacts.c.marked_at).limit(limit)
        ).scalars()
    )
    if ids:
        conn.execute(delete(dirty_contacts).where(dirty_contacts.c.contact_id.in_(ids)))
    return sorted(ids)


def queued(conn: Connection) -> int:
    from sqlalchemy import func

    return int(conn.execute(select(func.count()).select_from(dirty_contacts)).scalar_one())
