"""Accounts: the companies contacts work for (B2B). One account per web domain."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ekiden.auth.tables import users
from ekiden.clock import Clock
from ekiden.contacts.tables import accounts
from ekiden.errors import Conflict, Invalid, Malformed, NotFound
from ekiden.web.pagination import Page, decode_cursor, encode_cursor

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")


class AccountChanges(BaseModel):
    """Account fields to set; unset fields are left as they are, explicit null clears."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=300)
    domain: str | None = Field(None, max_length=253, description="e.g. example.co.jp")
    industry: str | None = Field(None, max_length=200)
    employees: int | None = Field(None, ge=0)
    country: str | None = Field(None, min_length=2, max_length=2)
    owner_id: int | None = None


class Account(BaseModel):
    id: int
    name: str
    domain: str | None
    industry: str | None
    employees: int | None
    country: str | None
    owner_id: int | None
    created_at: datetime
    updated_at: datetime


def normalise_domain(raw: str) -> str:
    """Lower-cased host name without scheme, ``www.`` or path; Invalid when not a domain."""
    text = raw.strip().lower()
    text = re.sub(r"^[a-z]+://", "", text).split("/")[0]
    text = text.removeprefix("www.").rstrip(".")
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        raise Invalid(f"{raw!r} is not a domain name", code="invalid_domain") from None
    if not _DOMAIN.match(text):
        raise Invalid(f"{raw!r} is not a domain name", code="invalid_domain")
    return text


def _values(conn: Connection, changes: AccountChanges) -> dict[str, Any]:
    values = {k: getattr(changes, k) for k in changes.model_fields_set}
    if "name" in values and values["name"] is None:
        raise Invalid("an account needs a name")
    if values.get("domain") is not None:
        values["domain"] = normalise_domain(values["domain"])
    if values.get("country") is not None:
        values["country"] = values["country"].upper()
    owner_id = values.get("owner_id")
    if (
        owner_id is not None
        and not conn.execute(select(users.c.id).where(users.c.id == owner_id)).first()
    ):
        raise Invalid(f"owner_id {owner_id} is not a user", code="unknown_owner")
    return values


def _write(conn: Connection, statement: Any, domain: str | None) -> int | None:
    """Run the insert / update; the new id for an insert. A taken domain is a Conflict."""
    try:
        with conn.begin_nested():
            result = conn.execute(statement)
            # read RETURNING inside the savepoint: SQLite cannot release it while a cursor is open
            return int(result.scalar_one()) if result.returns_rows else None
    except IntegrityError:
        raise Conflict(
            f"another account already has domain {domain}", code="account_exists"
        ) from None


def create_account(conn: Connection, clock: Clock, changes: AccountChanges) -> Account:
    """Create an account; Conflict (409) when its domain is taken, Invalid for bad values."""
    values = _values(conn, changes)
    if not values.get("name"):
        raise Invalid("an account needs a name")
    now = clock.now()
    statement = (
        insert(accounts)
        .values(**values, custom={}, created_at=now, updated_at=now)
        .returning(accounts.c.id)
    )
    new_id = _write(conn, statement, values.get("domain"))
    assert new_id is not None
    return get_account(conn, new_id)


def update_account(
    conn: Connection, clock: Clock, account_id: int, changes: AccountChanges
) -> Account:
    get_account(conn, account_id)
    values = _values(conn, changes)
    if values:
        statement = (
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(**values, updated_at=clock.now())
        )
        _write(conn, statement, values.get("domain"))
    return get_account(conn, account_id)


def get_account(conn: Connection, account_id: int) -> Account:
    row = conn.execute(select(accounts).where(accounts.c.id == account_id)).mappings().first()
    if row is None:
        raise NotFound(f"no account with id {account_id}")
    return Account.model_validate(dict(row))


def list_accounts(
    conn: Connection, *, q: str | None = None, limit: int, cursor: str | None = None
) -> Page[Account]:
    """Accounts in id order; ``q`` matches name or domain (substring, case-insensitive)."""
    after = decode_cursor(cursor, fields=("id",))
    query = select(accounts)
    if after is not None:
        if not isinstance(after["id"], int) or isinstance(after["id"], bool):
            raise Malformed("the cursor is not valid; pass back the `next` value unchanged")
        query = query.where(accounts.c.id > after["id"])
    if q:
        needle = q.strip().lower()
        query = query.where(
            or_(
                func.lower(accounts.c.name).contains(needle, autoescape=True),
                accounts.c.domain.contains(needle, autoescape=True),
            )
        )
    rows = list(conn.execute(query.order_by(accounts.c.id).limit(limit + 1)).mappings())
    items = [Account.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return Page[Account](items=items, next=encode_cursor({"id": items[-1].id}) if more else None)
