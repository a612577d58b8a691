"""Identity resolution: anonymous ids (one per browser / device) and user ids -> contacts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.contacts.service import live_contact_id
from ekiden.contacts.tables import identities
from ekiden.db.lists import one_of
from ekiden.segments.dirty import mark_dirty
from ekiden.tracking.events import attribute_anonymous_events
from ekiden.tracking.tables import events

# PostgreSQL advisory lock numbers for identities: an identity's bucket is 'EK' << 32 + a
# 32-bit hash of the id, so two transactions about different people practically never wait for
# each other. Every lock holder first holds ALL_IDENTITIES shared; a batch that would need very
# many buckets takes ALL_IDENTITIES alone instead (PostgreSQL's lock table is finite).
LOCK_SPACE = 0x45_4B << 32
ALL_IDENTITIES = LOCK_SPACE - 1


def identity_lock_key(value: str) -> int:
    """The advisory lock number of an identity (a user id, anonymous id or email)."""
    digest = hashlib.blake2b(value.strip().lower().encode(), digest_size=4).digest()
    return LOCK_SPACE + int.from_bytes(digest)


def lock_identity_keys(conn: Connection, exclusive: Iterable[int], shared: Iterable[int]) -> None:
    """Take transaction-scoped advisory locks, in ascending order (so two lockers never wait
    on each other in a cycle): ``exclusive`` for identities this transaction may write,
    ``shared`` for identities it only reads but must see settled — a page view's browser, so
    that an identify linking that browser either commits first (and the page view is stored
    as the contact's) or waits until the page view is stored (and then attributes it)."""
    if conn.dialect.name != "postgresql":
        return  # SQLite transactions already run one at a time (BEGIN IMMEDIATE)
    writes = set(exclusive)
    keys = sorted(writes | set(shared))
    if not keys:
        return
    conn.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": ALL_IDENTITIES})
    conn.execute(
        text(
            "SELECT CASE WHEN x THEN pg_advisory_xact_lock(k) "
            "ELSE pg_advisory_xact_lock_shared(k) END "
            "FROM unnest(CAST(:keys AS bigint[]), CAST(:writes AS boolean[])) AS t(k, x)"
        ),
        {"keys": keys, "writes": [k in writes for k in keys]},
    )


def lock_browsers(conn: Connection, anonymous_ids: Iterable[str]) -> None:
    """Lock these browsers' identities for writing (PostgreSQL; a no-op on SQLite). Callers
    that link a browser take this before they touch contact rows."""
    lock_identity_keys(conn, {identity_lock_key(a) for a in anonymous_ids if a}, ())


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
                identities.c.kind == "anonymous_id", one_of(conn, identities.c.value, chunk)
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
    lock_browsers(conn, [anonymous_id])  # a no-op when the caller holds it already
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


def link_anonymous_ids(
    conn: Connection, clock: Clock, links: Sequence[tuple[str, int, str | None]]
) -> None:
    """``link_anonymous_id`` for many browsers at once: ``links`` holds (anonymous id,
    contact id, device class), anonymous ids distinct. Three statements whatever the
    number; the contacts are queued for a segment refresh. The caller holds the browsers'
    identity locks (see ``lock_identity_keys``)."""
    if not links:
        return
    if len({anonymous_id for anonymous_id, _, _ in links}) != len(links):
        raise ValueError("an anonymous id may be linked only once per call")
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    now = clock.now()
    statement = dialect.insert(identities)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["kind", "value"], set_={"contact_id": statement.excluded.contact_id}
        ),
        [
            {
                "kind": "anonymous_id",
                "value": anonymous_id,
                "contact_id": contact_id,
                "device": device,
                "created_at": now,
            }
            for anonymous_id, contact_id, device in links
        ],
    )
    conn.execute(
        update(events)
        .where(events.c.anonymous_id == bindparam("browser"), events.c.contact_id.is_(None))
        .values(contact_id=bindparam("contact")),
        [{"browser": a, "contact": c} for a, c, _ in links],
    )
    mark_dirty(conn, clock, (c for _, c, _ in links))


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
