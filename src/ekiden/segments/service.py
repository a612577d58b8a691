"""Dynamic segments: definitions, full rebuilds, incremental refresh, preview.

Membership is stored (``segment_members``). A definition change bumps ``version`` and
rebuilds the whole segment; afterwards only contacts marked dirty (``dirty.py``) are looked at
again, segment by segment in dependency order, so a segment built on another sees its
fresh membership. Each change of membership is also an event (``segment_entered`` /
``segment_exited``) in the contact's history, which journeys start from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.rules.bind import check, is_time_dependent, segments_named
from ekiden.rules.fields import Catalog, load_catalog
from ekiden.rules.model import Filter, parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter
from ekiden.segments.models import Refreshed, Segment, SegmentChanges, SegmentIn
from ekiden.segments.tables import segment_members, segments
from ekiden.tracking.events import NewEvent, record_events


@dataclass(frozen=True)
class _Live:
    id: int
    slug: str
    flt: Filter


def _to_model(row: Any) -> Segment:
    return Segment(
        id=row.id,
        slug=row.slug,
        name=row.name,
        description=row.description,
        filter=row.filter,
        version=row.version,
        time_dependent=row.time_dependent,
        member_count=row.member_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
        refreshed_at=row.refreshed_at,
        built=row.built_version == row.version,
    )


def get_segment(conn: Connection, slug: str) -> Segment:
    row = conn.execute(
        select(segments).where(segments.c.slug == slug, segments.c.archived_at.is_(None))
    ).first()
    if row is None:
        raise NotFound(f"no segment {slug!r}")
    return _to_model(row)


def list_segments(conn: Connection) -> list[Segment]:
    rows = conn.execute(
        select(segments).where(segments.c.archived_at.is_(None)).order_by(segments.c.slug)
    )
    return [_to_model(r) for r in rows]


def _definitions(conn: Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        select(segments.c.slug, segments.c.filter).where(segments.c.archived_at.is_(None))
    )
    return {r.slug: r.filter for r in rows}


def _dependency_order(definitions: dict[str, Filter]) -> list[str]:
    """Slugs so that every segment comes after those it refers to; Invalid on a cycle."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(slug: str, trail: list[str]) -> None:
        if state.get(slug) == "done":
            return
        if state.get(slug) == "visiting":
            cycle = " -> ".join([*trail[trail.index(slug) :], slug])
            raise Invalid(f"segments refer to each other in a cycle: {cycle}", code="cycle")
        state[slug] = "visiting"
        for dep in sorted(segments_named(definitions[slug])):
            if dep in definitions:
                visit(dep, [*trail, slug])
        state[slug] = "done"
        order.append(slug)

    for slug in sorted(definitions):
        visit(slug, [])
    return order


def validate_filter(
    conn: Connection, raw: Any, zone: ZoneInfo, *, slug: str | None = None
) -> tuple[Filter, Catalog]:
    """Parse and check ``raw``; with ``slug`` also check that saving it as that segment's
    filter creates no cycle. Raises Invalid naming the offending part."""
    flt = parse_filter(raw)
    catalog = load_catalog(conn)
    if slug is not None and slug not in catalog.segments:
        catalog = replace(catalog, segments={**catalog.segments, slug: -1})
    check(flt, catalog, zone)
    if slug is not None:
        parsed = {s: parse_filter(f) for s, f in _definitions(conn).items()}
        parsed[slug] = flt
        _dependency_order(parsed)
    return flt, catalog


def create_segment(conn: Connection, clock: Clock, data: SegmentIn, zone: ZoneInfo) -> Segment:
    flt, _ = validate_filter(conn, data.filter, zone, slug=data.slug)
    now = clock.now()
    try:
        with conn.begin_nested():
            conn.execute(
                insert(segments).values(
                    slug=data.slug,
                    name=data.name,
                    description=data.description,
                    filter=data.filter,
                    version=1,
                    built_version=0,
                    time_dependent=is_time_dependent(flt),
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        raise Conflict(f"a segment {data.slug!r} already exists") from None
    return get_segment(conn, data.slug)


def update_segment(
    conn: Connection, clock: Clock, slug: str, changes: SegmentChanges, zone: ZoneInfo
) -> Segment:
    """Apply ``changes``; a new filter bumps the version so the segment is rebuilt."""
    current = get_segment(conn, slug)
    values: dict[str, Any] = {
        k: v for k, v in changes.model_dump(exclude_unset=True).items() if v is not None
    }
    if changes.filter is not None:
        flt, _ = validate_filter(conn, changes.filter, zone, slug=slug)
        values["version"] = current.version + 1
        values["time_dependent"] = is_time_dependent(flt)
    if values:
        values["updated_at"] = clock.now()
        conn.execute(update(segments).where(segments.c.id == current.id).values(**values))
    return get_segment(conn, slug)


def archive_segment(conn: Connection, clock: Clock, slug: str) -> None:
    """Archive: membership is dropped; a segment other segments refer to cannot go."""
    current = get_segment(conn, slug)
    users = [
        s
        for s, f in _definitions(conn).items()
        if s != slug and slug in segments_named(parse_filter(f))
    ]
    if users:
        raise Conflict(f"segment {slug!r} is used by: {', '.join(sorted(users))}")
    conn.execute(delete(segment_members).where(segment_members.c.segment_id == current.id))
    conn.execute(
        update(segments)
        .where(segments.c.id == current.id)
        .values(archived_at=clock.now(), slug=f"{slug}~{current.id}", member_count=0)
    )


def _live_segments(conn: Connection) -> list[_Live]:
    rows = {
        r.slug: r
        for r in conn.execute(
            select(segments.c.id, segments.c.slug, segments.c.filter).where(
                segments.c.archived_at.is_(None)
            )
        )
    }
    parsed = {slug: parse_filter(r.filter) for slug, r in rows.items()}
    return [_Live(rows[s].id, s, parsed[s]) for s in _dependency_order(parsed)]


def _apply(
    conn: Connection,
    clock: Clock,
    segment: _Live,
    env: SqlEnv,
    *,
    only: Sequence[int] | None,
) -> tuple[int, int]:
    """Make stored membership equal the filter's answer (for ``only`` these contacts, or for
    everyone); record entered / exited events. Returns (entered, exited)."""
    now = clock.now()
    if conn.dialect.name == "postgresql":
        # one refresher per segment at a time; every worker locks in dependency order
        conn.execute(select(segments.c.id).where(segments.c.id == segment.id).with_for_update())
    scope = [contacts.c.merged_into_id.is_(None)]
    member_scope = [segment_members.c.segment_id == segment.id]
    if only is not None:
        scope.append(contacts.c.id.in_(only))
        member_scope.append(segment_members.c.contact_id.in_(only))
    matching = select(contacts.c.id).where(*scope, compile_filter(segment.flt, env))
    current = select(segment_members.c.contact_id).where(*member_scope)
    # evaluate the filter once; the diff against stored membership is done here
    now_in = set(conn.execute(matching).scalars())
    was_in = set(conn.execute(current).scalars())
    entered = sorted(now_in - was_in)
    exited = sorted(was_in - now_in)
    for start in range(0, len(entered), 5000):
        conn.execute(
            insert(segment_members),
            [
                {"segment_id": segment.id, "contact_id": c, "entered_at": now}
                for c in entered[start : start + 5000]
            ],
        )
    if exited:
        for start in range(0, len(exited), 5000):
            conn.execute(
                delete(segment_members).where(
                    segment_members.c.segment_id == segment.id,
                    segment_members.c.contact_id.in_(exited[start : start + 5000]),
                )
            )
    history = [
        NewEvent(
            type=kind,
            occurred_at=now,
            source="system",
            contact_id=contact_id,
            properties={"segment": segment.slug, "segment_id": segment.id},
        )
        for kind, ids in (("segment_entered", entered), ("segment_exited", exited))
        for contact_id in ids
    ]
    record_events(conn, clock, history)
    if entered or exited or only is None:
        count = conn.execute(
            select(func.count()).where(segment_members.c.segment_id == segment.id)
        ).scalar_one()
        conn.execute(
            update(segments)
            .where(segments.c.id == segment.id)
            .values(member_count=count, refreshed_at=now)
        )
    return len(entered), len(exited)


def _env(conn: Connection, clock: Clock, zone: ZoneInfo) -> SqlEnv:
    return SqlEnv(catalog=load_catalog(conn), now=clock.now(), zone=zone, dialect=conn.dialect.name)


def rebuild_segment(conn: Connection, clock: Clock, slug: str, zone: ZoneInfo) -> Refreshed:
    """Full refresh of one segment over every contact."""
    live = {s.slug: s for s in _live_segments(conn)}
    if slug not in live:
        raise NotFound(f"no segment {slug!r}")
    segment = live[slug]
    entered, exited = _apply(conn, clock, segment, _env(conn, clock, zone), only=None)
    conn.execute(
        update(segments).where(segments.c.id == segment.id).values(built_version=segments.c.version)
    )
    return Refreshed(entered=entered, exited=exited, segments=1)


def rebuild_due(
    conn: Connection, clock: Clock, zone: ZoneInfo, *, all_segments: bool = False
) -> Refreshed:
    """Rebuild segments whose definition changed (or every segment with ``all_segments``),
    in dependency order."""
    total = Refreshed()
    stale = set(
        conn.execute(
            select(segments.c.slug).where(
                segments.c.archived_at.is_(None),
                true() if all_segments else segments.c.built_version != segments.c.version,
            )
        ).scalars()
    )
    for segment in _live_segments(conn):
        if segment.slug in stale:
            done = rebuild_segment(conn, clock, segment.slug, zone)
            total.entered += done.entered
            total.exited += done.exited
            total.segments += 1
    return total


def refresh_time_dependent(conn: Connection, clock: Clock, zone: ZoneInfo) -> Refreshed:
    """Full refresh of built segments whose membership moves with time alone (relative date
    windows): contacts leave "visited in the last 30 days" without doing anything."""
    total = Refreshed()
    env = _env(conn, clock, zone)
    moving = set(
        conn.execute(
            select(segments.c.id).where(
                segments.c.archived_at.is_(None),
                segments.c.time_dependent.is_(True),
                segments.c.built_version == segments.c.version,
            )
        ).scalars()
    )
    for segment in _live_segments(conn):
        if segment.id in moving:
            entered, exited = _apply(conn, clock, segment, env, only=None)
            total.entered += entered
            total.exited += exited
            total.segments += 1
    return total


def refresh_contacts(
    conn: Connection, clock: Clock, contact_ids: Sequence[int], zone: ZoneInfo
) -> Refreshed:
    """Re-evaluate every built segment for these contacts only (the incremental path)."""
    total = Refreshed(contacts=len(contact_ids))
    if not contact_ids:
        return total
    env = replace(_env(conn, clock, zone), only=tuple(contact_ids))
    built = set(
        conn.execute(
            select(segments.c.id).where(
                segments.c.archived_at.is_(None), segments.c.built_version == segments.c.version
            )
        ).scalars()
    )
    for segment in _live_segments(conn):
        if segment.id not in built:
            continue  # its rebuild will cover these contacts
        entered, exited = _apply(conn, clock, segment, env, only=contact_ids)
        total.entered += entered
        total.exited += exited
        total.segments += 1
    return total


def preview(
    conn: Connection, clock: Clock, raw_filter: Any, zone: ZoneInfo, *, sample: int = 10
) -> tuple[int, list[int]]:
    """How many live contacts an unsaved filter selects now, and a few of their ids."""
    flt, catalog = validate_filter(conn, raw_filter, zone)
    env = SqlEnv(catalog=catalog, now=clock.now(), zone=zone, dialect=conn.dialect.name)
    where = [contacts.c.merged_into_id.is_(None), compile_filter(flt, env)]
    count = conn.execute(select(func.count()).select_from(contacts).where(*where)).scalar_one()
    ids = conn.execute(select(contacts.c.id).where(*where).order_by(contacts.c.id).limit(sample))
    return int(count), list(ids.scalars())
