"""Writing to and reading from the append-only behaviour history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, update
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
    received = clock.now()
    rows = [
        {
            "type": e.type,
            "name": e.name,
            "contact_id": e.contact_id,
            "anonymous_id": e.anonymous_id,
            "occurred_at": e.occurred_at,
            "received_at": received,
            "path": e.path,
            "dwell_ms": e.dwell_ms,
            "properties": e.properties,
            "context": e.context,
            "ip": e.ip,
            "user_agent": e.user_agent,
            "machine": e.machine,
            "machine_reason": e.machine_reason,
            "message_id": e.message_id,
            "source": e.source,
        }
        for e in batch
    ]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(events).on_conflict_do_nothing(index_elements=["message_id"])
    conn.execute(statement, rows)
    # new behaviour may change segment membership; system events (segment entries
    # themselves) are consequences, not causes
    mark_dirty(conn, clock, (e.contact_id for e in batch if e.source != "system"))


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
