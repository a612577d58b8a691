"""Giving a lead without an owner to a sales user: territory rules first, then round robin."""

from __future__ import annotations

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.auth.tables import users
from ekiden.contacts.tables import contacts
from ekiden.lifecycle.tables import round_robin, territories
from ekiden.rules.model import parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter

POOL = "sales"


def _territory_owner(conn: Connection, env: SqlEnv, contact_id: int) -> int | None:
    rows = conn.execute(
        select(territories.c.filter, territories.c.user_id)
        .join(users, users.c.id == territories.c.user_id)
        .where(users.c.disabled_at.is_(None))
        .order_by(territories.c.position, territories.c.id)
    ).all()
    for row in rows:
        matched = conn.execute(
            select(contacts.c.id).where(
                contacts.c.id == contact_id, compile_filter(parse_filter(row.filter), env)
            )
        ).first()
        if matched is not None:
            return int(row.user_id)
    return None


def _next_in_turn(conn: Connection) -> int | None:
    """The active sales user after the last one given a lead (by id, wrapping around)."""
    sales = list(
        conn.execute(
            select(users.c.id)
            .where(users.c.role == "sales", users.c.disabled_at.is_(None))
            .order_by(users.c.id)
        ).scalars()
    )
    if not sales:
        return None
    query = select(round_robin.c.last_user_id).where(round_robin.c.pool == POOL)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    last = conn.execute(query).scalar_one_or_none()
    chosen = next((u for u in sales if last is None or u > last), sales[0])
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(round_robin).values(pool=POOL, last_user_id=chosen)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["pool"], set_={"last_user_id": statement.excluded.last_user_id}
        )
    )
    return int(chosen)


def assign_owner(conn: Connection, env: SqlEnv, contact_id: int) -> int | None:
    """Set and return the owner of ``contact_id`` (territory rule, else the next sales user
    in turn); None when there is nobody to give it to."""
    owner = _territory_owner(conn, env, contact_id) or _next_in_turn(conn)
    if owner is not None:
        conn.execute(update(contacts).where(contacts.c.id == contact_id).values(owner_id=owner))
    return owner
