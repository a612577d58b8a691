"""Writing to and reading from the append-only behaviour history."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import psycopg.errors
from sqlalchemy import Connection, Dialect, update
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.segments.dirty import mark_dirty
from ekiden.tracking.tables import events

EVENT_SOURCES = ("api", "browser", "pixel", "form", "email", "system", "import")


@dataclass
class NewEvent:
    """One event to store. ``contact_id`` may be None for anonymous visitors."""

    type: str
    occurred_at: datetime
    source: str
    contact_id: int | None = None
    anonymous_id: str | None = None
    name: str | None = None
    path: str | None = None
    dwell_ms: int | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    ip: str | None = None
    user_agent: str | None = None
    machine: bool = False
    machine_reason: str | None = None
    message_id: str | None = None


def record_events(conn: Connection, clock: Clock, batch: Sequence[NewEvent]) -> None:
    """Append ``batch`` in one statement; an event whose message id is already stored is
    skipped silently (retries and duplicate deliveries are normal)."""
    if not batch:
        return
    insert = _event_insert(conn.dialect)
    convert = insert.converters
    received = convert.moment(clock.now())
    values = [
        (
            e.type,
            e.name,
            e.contact_id,
            e.anonymous_id,
            convert.moment(e.occurred_at),
            received,
            e.path,
            e.dwell_ms,
            convert.document(e.properties),
            convert.document(e.context),
            e.ip,
            e.user_agent,
            convert.flag(e.machine),
            e.machine_reason,
            e.message_id,
            e.source,
        )
        for e in batch
    ]
    if not (conn.dialect.name == "postgresql" and len(values) >= COPY_FROM and _copy(conn, values)):
        # the statement is compiled from a Core expression once; rows go to the driver's
        # executemany as they are, without per-row statement processing
        conn.exec_driver_sql(insert.sql, [insert.row(v) for v in values])
    # new behaviour may change segment membership; system events (segment entries
    # themselves) are consequences, not causes
    mark_dirty(conn, clock, (e.contact_id for e in batch if e.source != "system"))


# From this many rows on, PostgreSQL gets them by COPY: one stream instead of one INSERT
# per row (several times faster for a batch of hundreds).
COPY_FROM = 20


def _copy(conn: Connection, values: list[tuple[Any, ...]]) -> bool:
    """COPY the rows into events inside a savepoint; False (nothing written) when one of their
    message ids is already stored: a concurrent batch carried the same message, and the caller
    falls back to ``INSERT ... ON CONFLICT DO NOTHING``, which skips it."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        with conn.begin_nested(), raw.cursor() as cursor, cursor.copy(_COPY_SQL) as copy:
            for row in values:
                copy.write_row(row)
    except psycopg.errors.UniqueViolation:
        return False
    return True


_COLUMNS = (
    "type", "name", "contact_id", "anonymous_id", "occurred_at", "received_at", "path",
    "dwell_ms", "properties", "context", "ip", "user_agent", "machine", "machine_reason",
    "message_id", "source",
)  # fmt: skip
_COPY_SQL = f"COPY events ({', '.join(_COLUMNS)}) FROM STDIN"


class _Converters:
    """The bind conversions of the events columns' types for one dialect (what SQLAlchemy
    applies to each parameter), for the three kinds of typed columns."""

    def __init__(self, dialect: Dialect) -> None:
        self.moment = _processor(dialect, "occurred_at")
        self.document = _processor(dialect, "properties")
        self.flag = _processor(dialect, "machine")


def _processor(dialect: Dialect, column: str) -> Callable[[Any], Any]:
    process = events.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _same


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class _EventInsert:
    sql: str
    converters: _Converters
    row: Callable[[tuple[Any, ...]], Any]


_inserts: weakref.WeakKeyDictionary[Dialect, _EventInsert] = weakref.WeakKeyDictionary()


def _event_insert(dialect: Dialect) -> _EventInsert:
    """``INSERT INTO events ... ON CONFLICT (message_id) DO NOTHING`` compiled for the
    dialect, with how to shape one row of parameters for its driver."""
    found = _inserts.get(dialect)
    if found is not None:
        return found
    flavour = postgresql if dialect.name == "postgresql" else sqlite
    statement = flavour.insert(events).on_conflict_do_nothing(index_elements=["message_id"])
    compiled = statement.compile(dialect=dialect, column_keys=list(_COLUMNS), for_executemany=True)
    if compiled.positional:
        order = [_COLUMNS.index(name) for name in compiled.positiontup or ()]
        if order == list(range(len(_COLUMNS))):
            row: Callable[[tuple[Any, ...]], Any] = _same
        else:
            row = lambda values: tuple(values[i] for i in order)  # noqa: E731
    else:
        names = list(compiled.params)
        if sorted(names) != sorted(_COLUMNS):
            raise RuntimeError(f"unexpected parameters of the events insert: {names}")
        row = lambda values: dict(zip(_COLUMNS, values, strict=True))  # noqa: E731
    found = _EventInsert(compiled.string, _Converters(dialect), row)
    _inserts[dialect] = found
    return found


def attribute_anonymous_events(conn: Connection, anonymous_id: str, contact_id: int) -> int:
    """Give the anonymous history of ``anonymous_id`` to ``contact_id`` (R2: the visitor
    became known). Events already attributed to someone are left as they are."""
    result = conn.execute(
        update(events)
        .where(events.c.anonymous_id == anonymous_id, events.c.contact_id.is_(None))
        .values(contact_id=contact_id)
    )
    return int(result.rowcount or 0)


def reassign_contact_events(conn: Connection, from_contact: int, to_contact: int) -> int:
    """Move every event of ``from_contact`` to ``to_contact`` (a merge)."""
    result = conn.execute(
        update(events).where(events.c.contact_id == from_contact).values(contact_id=to_contact)
    )
    return int(result.rowcount or 0)
