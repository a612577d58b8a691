"""Moving contacts between stages: the one writer of stage columns, history and events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ekiden.auth.tables import users
from ekiden.clock import Clock
from ekiden.contacts.service import contact_not_found, require_live_contact
from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid
from ekiden.lifecycle.models import HistoryEntry, MoveIn, MoveSource, StageKind, StageState
from ekiden.lifecycle.stages import load_order
from ekiden.lifecycle.tables import stage_history
from ekiden.segments.dirty import mark_dirty
from ekiden.tracking.events import NewEvent, record_events

DEFAULT_CURRENCY = "JPY"


@dataclass(frozen=True)
class Move:
    contact_id: int
    kind: StageKind
    from_stage: str | None
    to_stage: str
    source: MoveSource
    rule_id: int | None = None
    moved_by: str | None = None
    user_id: int | None = None
    deal_value: float | None = None
    currency: str | None = None
    note: str | None = None


def _columns(kind: StageKind) -> tuple[str, str]:
    return (f"{kind}_stage", f"{kind}_stage_at")


def apply_moves(conn: Connection, clock: Clock, moves: Sequence[Move]) -> None:
    """Write ``moves`` (already judged allowed): the contacts' stage columns, one history
    row each and, for every move but the entry into the first stage, one ``stage_changed``
    event (source "system"). Entries are as many as contacts and tell a journey nothing a
    new contact does not; leaving them out keeps the worker's busiest path light."""
    if not moves:
        return
    now = clock.now()
    grouped: dict[tuple[StageKind, str], list[int]] = defaultdict(list)
    for move in moves:
        grouped[(move.kind, move.to_stage)].append(move.contact_id)
    for (kind, stage), ids in grouped.items():
        stage_col, at_col = _columns(kind)
        for start in range(0, len(ids), 5000):
            conn.execute(
                update(contacts)
                .where(contacts.c.id.in_(ids[start : start + 5000]))
                .values({stage_col: stage, at_col: now})
            )
    conn.execute(
        insert(stage_history),
        [
            {
                "contact_id": m.contact_id,
                "kind": m.kind,
                "from_stage": m.from_stage,
                "to_stage": m.to_stage,
                "moved_at": now,
                "source": m.source,
                "rule_id": m.rule_id,
                "moved_by": m.moved_by,
                "user_id": m.user_id,
                "deal_value": m.deal_value,
                "currency": m.currency,
                "note": m.note,
            }
            for m in moves
        ],
    )
    record_events(conn, clock, [_event(m, now) for m in moves if m.source != "entry"])


def _event(move: Move, now: Any) -> NewEvent:
    properties: dict[str, Any] = {
        "kind": move.kind,
        "from": move.from_stage,
        "to": move.to_stage,
        "by": move.source,
    }
    if move.rule_id is not None:
        properties["rule_id"] = move.rule_id
    if move.deal_value is not None:
        properties["deal_value"] = move.deal_value
        properties["currency"] = move.currency
    return NewEvent(
        type="stage_changed",
        occurred_at=now,
        source="system",
        contact_id=move.contact_id,
        properties=properties,
    )


def _current(conn: Connection, contact_id: int, kind: StageKind) -> str | None:
    query = select(contacts.c[f"{kind}_stage"]).where(contacts.c.id == contact_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # concurrent moves of one contact queue up
    value: str | None = conn.execute(query).scalar_one()
    return value


def move_contact(
    conn: Connection,
    clock: Clock,
    contact_id: int,
    data: MoveIn,
    *,
    moved_by: str | None,
    source: MoveSource = "api",
) -> HistoryEntry:
    """A manual move. Raises Invalid (unknown stage, a deal value for a stage that is not
    won, an unknown user) or Conflict (skip, backwards or out of a closed stage where not
    allowed); nothing is written then."""
    require_live_contact(conn, contact_id)
    order = load_order(conn, data.kind)
    goal = order.require(data.stage)
    if data.deal_value is not None and goal.outcome != "won":
        raise Invalid(
            f"a deal value is recorded only on a won stage, not on {goal.key!r}",
            code="deal_value_not_allowed",
        )
    if data.currency is not None and data.deal_value is None:
        raise Invalid("a currency needs a deal value", code="currency_without_value")
    if (
        data.user_id is not None
        and conn.execute(select(users.c.id).where(users.c.id == data.user_id)).first() is None
    ):
        raise Invalid(f"no user with id {data.user_id}", code="unknown_user")
    current = _current(conn, contact_id, data.kind)
    problem = order.problem(current, goal.key, automatic=False)
    if problem is not None:
        raise problem
    move = Move(
        contact_id=contact_id,
        kind=data.kind,
        from_stage=current,
        to_stage=goal.key,
        source=source,
        moved_by=moved_by,
        user_id=data.user_id,
        deal_value=data.deal_value,
        currency=(data.currency or DEFAULT_CURRENCY) if data.deal_value is not None else None,
        note=data.note,
    )
    apply_moves(conn, clock, [move])
    mark_dirty(conn, clock, [contact_id])  # segments and hand-offs look at the new stage
    return history(conn, contact_id, limit=1)[0]


def stage_state(conn: Connection, contact_id: int) -> StageState:
    row = conn.execute(
        select(
            contacts.c.id,
            contacts.c.lifecycle_stage,
            contacts.c.lifecycle_stage_at,
            contacts.c.buying_stage,
            contacts.c.buying_stage_at,
            contacts.c.merged_into_id,
        ).where(contacts.c.id == contact_id)
    ).first()
    if row is None or row.merged_into_id is not None:
        raise contact_not_found(conn, contact_id)
    return StageState(
        contact_id=row.id,
        lifecycle_stage=row.lifecycle_stage,
        lifecycle_stage_at=row.lifecycle_stage_at,
        buying_stage=row.buying_stage,
        buying_stage_at=row.buying_stage_at,
    )


def history(
    conn: Connection, contact_id: int, *, kind: StageKind | None = None, limit: int = 500
) -> list[HistoryEntry]:
    """The contact's stage moves, newest first."""
    query = select(stage_history).where(stage_history.c.contact_id == contact_id)
    if kind is not None:
        query = query.where(stage_history.c.kind == kind)
    rows = conn.execute(
        query.order_by(stage_history.c.moved_at.desc(), stage_history.c.id.desc()).limit(limit)
    ).mappings()
    return [HistoryEntry.model_validate(dict(r)) for r in rows]
