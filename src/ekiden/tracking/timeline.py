"""A contact's timeline: their events, newest first (the read side of the history)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Connection, and_, or_, select

from ekiden.errors import Malformed
from ekiden.tracking.tables import events
from ekiden.web.pagination import Page, decode_cursor, encode_cursor

MachineFilter = Literal["include", "exclude", "only"]


class TimelineEvent(BaseModel):
    """One stored event as the timeline shows it; ``machine`` marks scanner / bot activity."""

    id: int
    type: str
    name: str | None
    occurred_at: datetime
    received_at: datetime
    anonymous_id: str | None
    path: str | None
    dwell_ms: int | None
    properties: dict[str, Any]
    context: dict[str, Any]
    ip: str | None
    user_agent: str | None
    machine: bool
    machine_reason: str | None
    message_id: str | None
    source: str


def contact_timeline(
    conn: Connection,
    contact_id: int,
    *,
    types: list[str] | None = None,
    machine: MachineFilter = "include",
    limit: int,
    cursor: str | None = None,
) -> Page[TimelineEvent]:
    """The contact's events ordered by (occurred_at, id) descending, ``limit`` per page.

    The keyset (occurred_at, id) of the last item is the cursor, so a page never repeats or
    skips an event even when late events arrive for older moments. ``machine`` keeps all
    events (include), hides machine activity (exclude) or shows only it (only).
    Malformed (400) for a cursor that is not ours.
    """
    after = decode_cursor(cursor, fields=("at", "id"))
    query = select(events).where(events.c.contact_id == contact_id)
    if types:
        query = query.where(events.c.type.in_(types))
    if machine == "exclude":
        query = query.where(events.c.machine.is_(False))
    elif machine == "only":
        query = query.where(events.c.machine.is_(True))
    if after is not None:
        at, last_id = _parse_key(after)
        query = query.where(
            or_(events.c.occurred_at < at, and_(events.c.occurred_at == at, events.c.id < last_id))
        )
    query = query.order_by(events.c.occurred_at.desc(), events.c.id.desc()).limit(limit + 1)
    rows = list(conn.execute(query).mappings())
    items = [TimelineEvent.model_validate(dict(r)) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = encode_cursor({"at": last.occurred_at.isoformat(), "id": last.id})
    return Page[TimelineEvent](items=items, next=next_cursor)


def _parse_key(key: dict[str, Any]) -> tuple[datetime, int]:
    try:
        at = datetime.fromisoformat(key["at"])
    except (TypeError, ValueError):
        at = None
    last_id = key["id"]
    if at is None or at.tzinfo is None or not isinstance(last_id, int):
        raise Malformed("the cursor is not valid; pass back the `next` value unchanged")
    return at, last_id
