"""Reading the behaviour history for export, in id order, a chunk at a time.

Each chunk is read in its own short transaction (keyset on id), so an export of millions of
events holds no lock and no long snapshot. Events committed while an export runs may or may
not be included; an export is a copy of the history as of (roughly) its start.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select

from ekiden.errors import Invalid
from ekiden.tracking.tables import events

CHUNK = 2000
EVENT_COLUMNS = (
    "id",
    "type",
    "name",
    "contact_id",
    "anonymous_id",
    "occurred_at",
    "received_at",
    "path",
    "dwell_ms",
    "machine",
    "machine_reason",
    "source",
    "message_id",
    "ip",
    "user_agent",
    "properties",
    "context",
)


@dataclass(frozen=True)
class EventFilters:
    """Which events to export; every filter is optional. ``until`` is exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    type: str | None = None
    contact_id: int | None = None


def parse_moment(text: str, *, name: str) -> datetime:
    """An ISO 8601 date-time with an offset ("2026-11-01T00:00:00+09:00" or "...Z").

    A time without an offset is refused rather than guessed (UTC or Tokyo?).
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(
            f"{name} must be an ISO 8601 date-time such as 2026-11-01T00:00:00+09:00, not {text!r}",
            code="invalid_time",
        ) from None
    if moment.tzinfo is None:
        raise Invalid(
            f"{name} needs a time zone offset, e.g. {text.strip()}+09:00 or {text.strip()}Z",
            code="invalid_time",
        )
    return moment


def _conditions(filters: EventFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.since is not None:
        conditions.append(events.c.occurred_at >= filters.since)
    if filters.until is not None:
        conditions.append(events.c.occurred_at < filters.until)
    if filters.type:
        conditions.append(events.c.type == filters.type)
    if filters.contact_id is not None:
        conditions.append(events.c.contact_id == filters.contact_id)
    return conditions


def count_events(engine: Engine, filters: EventFilters) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(events).where(*_conditions(filters))
            ).scalar_one()
        )


def event_chunks(engine: Engine, filters: EventFilters) -> Iterator[list[list[Any]]]:
    """Matching events as rows of ``EVENT_COLUMNS`` values, oldest id first."""
    columns = [events.c[name] for name in EVENT_COLUMNS]
    conditions = _conditions(filters)
    after = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(*columns)
                .where(*conditions, events.c.id > after)
                .order_by(events.c.id)
                .limit(CHUNK)
            ).all()
        if not rows:
            return
        yield [list(row) for row in rows]
        after = rows[-1].id
