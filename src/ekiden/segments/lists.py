"""Static lists: contacts added and removed explicitly (API, CSV, form action, journeys)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.segments.dirty import mark_dirty
from ekiden.segments.models import ListIn, StaticList
from ekiden.segments.tables import list_members, lists

LIST_SOURCES = ("api", "csv", "form", "journey")


def _list_row(conn: Connection, slug: str) -> StaticList:
    row = conn.execute(
        select(lists).where(lists.c.slug == slug, lists.c.archived_at.is_(None))
    ).first()
    if row is None:
        raise NotFound(f"no list {slug!r}")
    count = conn.execute(select(func.count()).where(list_members.c.list_id == row.id)).scalar_one()
    return StaticList(
        id=row.id,
        slug=row.slug,
        name=row.name,
        description=row.description,
        member_count=count,
        created_at=row.created_at,
    )


get_list = _list_row


def all_lists(conn: Connection) -> list[StaticList]:
    slugs = conn.execute(
        select(lists.c.slug).where(lists.c.archived_at.is_(None)).order_by(lists.c.slug)
    ).scalars()
    return [_list_row(conn, s) for s in slugs]


def create_list(conn: Connection, clock: Clock, data: ListIn) -> StaticList:
    try:
        with conn.begin_nested():
            conn.execute(
                insert(lists).values(
                    slug=data.slug,
                    name=data.name,
                    description=data.description,
                    created_at=clock.now(),
                )
            )
    except IntegrityError:
        raise Conflict(f"a list {data.slug!r} already exists") from None
    return _list_row(conn, data.slug)


def archive_list(conn: Connection, clock: Clock, slug: str) -> None:
    current = _list_row(conn, slug)
    members = list(
        conn.execute(
            select(list_members.c.contact_id).where(list_members.c.list_id == current.id)
        ).scalars()
    )
    conn.execute(delete(list_members).where(list_members.c.list_id == current.id))
    conn.execute(
        update(lists)
        .where(lists.c.id == current.id)
        .values(archived_at=clock.now(), slug=f"{slug}~{current.id}")
    )
    mark_dirty(conn, clock, members)


def _existing_contacts(conn: Connection, ids: Sequence[int]) -> set[int]:
    found: set[int] = set()
    for start in range(0, len(ids), 1000):
        chunk = list(ids[start : start + 1000])
        found |= set(
            conn.execute(
                select(contacts.c.id).where(
                    contacts.c.id.in_(chunk), contacts.c.merged_into_id.is_(None)
                )
            ).scalars()
        )
    return found


def add_members(
    conn: Connection, clock: Clock, slug: str, contact_ids: Sequence[int], *, source: str
) -> int:
    """Add contacts to the list; returns how many were not on it yet.

    Unknown contact ids raise Invalid listing them, and nothing is added."""
    if source not in LIST_SOURCES:
        raise ValueError(f"unknown list source {source}")
    target = _list_row(conn, slug)
    wanted = sorted(set(contact_ids))
    missing = sorted(set(wanted) - _existing_contacts(conn, wanted))
    if missing:
        shown = ", ".join(map(str, missing[:20]))
        raise Invalid(f"no such contacts: {shown}", code="unknown_contact", details=missing)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    now = clock.now()
    added = 0
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        result = conn.execute(
            dialect.insert(list_members)
            .on_conflict_do_nothing(index_elements=["list_id", "contact_id"])
            .returning(list_members.c.contact_id),
            [
                {"list_id": target.id, "contact_id": c, "added_at": now, "source": source}
                for c in chunk
            ],
        )
        added += len(list(result.scalars()))
    mark_dirty(conn, clock, wanted)
    return added


def remove_members(conn: Connection, clock: Clock, slug: str, contact_ids: Sequence[int]) -> int:
    target = _list_row(conn, slug)
    wanted = sorted(set(contact_ids))
    removed = 0
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        removed += int(
            conn.execute(
                delete(list_members).where(
                    list_members.c.list_id == target.id, list_members.c.contact_id.in_(chunk)
                )
            ).rowcount
            or 0
        )
    mark_dirty(conn, clock, wanted)
    return removed


def emails_from_csv(data: bytes) -> list[tuple[int, str]]:
    """(line, email) for every row of a CSV file with an email column (UTF-8 or Shift_JIS,
    English or Japanese header). Invalid naming the problem when there is no such column."""
    from ekiden.contacts.importer_csv import decode_csv, read_records
    from ekiden.contacts.importer_mapping import automatic_target

    header, rows = read_records(decode_csv(data).text)
    column = next(
        (i for i, name in enumerate(header.cells) if automatic_target(name, {}) == "email"), None
    )
    if column is None:
        raise Invalid("the CSV has no email column (e.g. email, E-mail, メールアドレス)")
    return [
        (row.line, row.cells[column].strip())
        for row in rows
        if column < len(row.cells) and row.cells[column].strip()
    ]
