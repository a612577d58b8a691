"""Hot-lead / upsell definitions and territory rules (configuration of the hand-off)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ekiden.auth.tables import users
from ekiden.clock import Clock
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.lifecycle.handoff_models import (
    Definition,
    DefinitionChanges,
    DefinitionIn,
    Territory,
    TerritoryIn,
)
from ekiden.lifecycle.tables import hot_lead_definitions, territories
from ekiden.segments.service import validate_filter


def _definition(row: Any) -> Definition:
    return Definition.model_validate(dict(row._mapping))


def get_definition(conn: Connection, key: str) -> Definition:
    row = conn.execute(
        select(hot_lead_definitions).where(hot_lead_definitions.c.key == key)
    ).first()
    if row is None:
        raise NotFound(f"no hot-lead definition {key!r}")
    return _definition(row)


def list_definitions(conn: Connection, *, enabled_only: bool = False) -> list[Definition]:
    query = select(hot_lead_definitions).order_by(hot_lead_definitions.c.key)
    if enabled_only:
        query = query.where(hot_lead_definitions.c.enabled.is_(True))
    return [_definition(r) for r in conn.execute(query)]


def create_definition(
    conn: Connection, clock: Clock, data: DefinitionIn, zone: ZoneInfo
) -> Definition:
    validate_filter(conn, data.filter, zone)
    now = clock.now()
    try:
        with conn.begin_nested():
            conn.execute(
                insert(hot_lead_definitions).values(
                    **data.model_dump(), created_at=now, updated_at=now
                )
            )
    except IntegrityError:
        raise Conflict(f"a hot-lead definition {data.key!r} already exists") from None
    return get_definition(conn, data.key)


def update_definition(
    conn: Connection, clock: Clock, key: str, changes: DefinitionChanges, zone: ZoneInfo
) -> Definition:
    """Apply ``changes``; ``webhook_url`` / ``task_due_days`` set to null clear them."""
    current = get_definition(conn, key)
    given = changes.model_dump(exclude_unset=True)
    clearable = {"webhook_url", "task_due_days"}
    values = {k: v for k, v in given.items() if v is not None or k in clearable}
    if changes.filter is not None:
        validate_filter(conn, changes.filter, zone)
    if values:
        values["updated_at"] = clock.now()
        conn.execute(
            update(hot_lead_definitions)
            .where(hot_lead_definitions.c.id == current.id)
            .values(**values)
        )
    return get_definition(conn, key)


def delete_definition(conn: Connection, key: str) -> None:
    """Delete a definition; the alerts it raised stay in the hand-off history."""
    current = get_definition(conn, key)
    conn.execute(delete(hot_lead_definitions).where(hot_lead_definitions.c.id == current.id))


def require_user(conn: Connection, user_id: int) -> None:
    found = conn.execute(
        select(users.c.id).where(users.c.id == user_id, users.c.disabled_at.is_(None))
    ).first()
    if found is None:
        raise Invalid(f"no active user with id {user_id}", code="unknown_user")


def list_territories(conn: Connection) -> list[Territory]:
    rows = conn.execute(select(territories).order_by(territories.c.position, territories.c.id))
    return [Territory.model_validate(dict(r._mapping)) for r in rows]


def create_territory(
    conn: Connection, clock: Clock, data: TerritoryIn, zone: ZoneInfo
) -> Territory:
    validate_filter(conn, data.filter, zone)
    require_user(conn, data.user_id)
    position = data.position
    if position is None:
        last = conn.execute(select(func.max(territories.c.position))).scalar_one()
        position = 0 if last is None else last + 1
    new_id = conn.execute(
        insert(territories)
        .values(
            name=data.name,
            filter=data.filter,
            user_id=data.user_id,
            position=position,
            created_at=clock.now(),
        )
        .returning(territories.c.id)
    ).scalar_one()
    return next(t for t in list_territories(conn) if t.id == new_id)


def delete_territory(conn: Connection, territory_id: int) -> None:
    result = conn.execute(delete(territories).where(territories.c.id == territory_id))
    if not result.rowcount:
        raise NotFound(f"no territory with id {territory_id}")
