"""Stage rules: a filter-language condition and the stage it moves contacts forward to."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, func, insert, select, update

from ekiden.clock import Clock
from ekiden.errors import NotFound
from ekiden.lifecycle.models import Rule, RuleChanges, RuleIn, StageKind
from ekiden.lifecycle.stages import load_order
from ekiden.lifecycle.tables import stage_rules
from ekiden.segments.service import validate_filter


def _to_model(row: Any) -> Rule:
    return Rule.model_validate(dict(row._mapping))


def get_rule(conn: Connection, rule_id: int) -> Rule:
    row = conn.execute(select(stage_rules).where(stage_rules.c.id == rule_id)).first()
    if row is None:
        raise NotFound(f"no stage rule with id {rule_id}")
    return _to_model(row)


def list_rules(conn: Connection, kind: StageKind | None = None) -> list[Rule]:
    query = select(stage_rules).order_by(
        stage_rules.c.kind, stage_rules.c.position, stage_rules.c.id
    )
    if kind is not None:
        query = query.where(stage_rules.c.kind == kind)
    return [_to_model(r) for r in conn.execute(query)]


def create_rule(conn: Connection, clock: Clock, data: RuleIn, zone: ZoneInfo) -> Rule:
    """Store a rule; Invalid when its filter or target stage is not valid."""
    validate_filter(conn, data.filter, zone)
    load_order(conn, data.kind).require(data.target)
    position = data.position
    if position is None:
        last = conn.execute(
            select(func.max(stage_rules.c.position)).where(stage_rules.c.kind == data.kind)
        ).scalar_one()
        position = 0 if last is None else last + 1
    now = clock.now()
    rule_id = conn.execute(
        insert(stage_rules)
        .values(
            kind=data.kind,
            name=data.name,
            target=data.target,
            filter=data.filter,
            position=position,
            enabled=data.enabled,
            created_at=now,
            updated_at=now,
        )
        .returning(stage_rules.c.id)
    ).scalar_one()
    return get_rule(conn, rule_id)


def update_rule(
    conn: Connection, clock: Clock, rule_id: int, changes: RuleChanges, zone: ZoneInfo
) -> Rule:
    current = get_rule(conn, rule_id)
    values = {k: v for k, v in changes.model_dump(exclude_unset=True).items() if v is not None}
    if changes.filter is not None:
        validate_filter(conn, changes.filter, zone)
    if changes.target is not None:
        load_order(conn, current.kind).require(changes.target)
    if values:
        values["updated_at"] = clock.now()
        conn.execute(update(stage_rules).where(stage_rules.c.id == rule_id).values(**values))
    return get_rule(conn, rule_id)


def delete_rule(conn: Connection, rule_id: int) -> None:
    get_rule(conn, rule_id)
    conn.execute(delete(stage_rules).where(stage_rules.c.id == rule_id))
