"""Request dependencies shared by every router: the database, the clock, the caller's key."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from ekiden.auth.keys import ApiKey, find_key
from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.db.engine import read_connection
from ekiden.errors import Forbidden, Unauthorized


@dataclass(frozen=True)
class AppContext:
    """What every request may use; set on ``app.state.ctx`` by ``create_app``."""

    settings: Settings
    engine: Engine
    clock: Clock


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_conn(ctx: Annotated[AppContext, Depends(get_ctx)]) -> Iterator[Connection]:
    """One transaction per request: committed when the handler returns, rolled back on error."""
    with ctx.engine.begin() as conn:
        yield conn


def get_read_conn(ctx: Annotated[AppContext, Depends(get_ctx)]) -> Iterator[Connection]:
    """A read-only transaction (never blocks or waits for writers on SQLite)."""
    with read_connection(ctx.engine) as conn, conn.begin():
        yield conn


Ctx = Annotated[AppContext, Depends(get_ctx)]
Conn = Annotated[Connection, Depends(get_conn)]
ReadConn = Annotated[Connection, Depends(get_read_conn)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def basic_username(request: Request) -> str | None:
    """The user name of HTTP Basic credentials: how Segment's SDKs send the write key."""
    header = request.headers.get("authorization", "")
    scheme, _, payload = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(payload.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _ = decoded.partition(":")
    return user or None


def lookup_key(ctx: AppContext, key: str | None) -> ApiKey:
    if not key:
        raise Unauthorized("an API key is required")
    # a read-only connection: it must not wait for the request's own write transaction
    with read_connection(ctx.engine) as conn:
        found = find_key(conn, key)
    if found is None:
        raise Unauthorized("the API key is unknown or revoked")
    return found


def require_admin(request: Request, ctx: Ctx) -> ApiKey:
    """The admin key from ``Authorization: Bearer``; 401 without one, 403 for an ingest key."""
    key = lookup_key(ctx, _bearer(request))
    if key.scope != "admin":
        raise Forbidden("this endpoint needs an admin key; an ingest key can only write events")
    return key


AdminKey = Annotated[ApiKey, Depends(require_admin)]
