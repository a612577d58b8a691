"""API keys: created once and shown once, stored as sha256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, insert, select, update

from ekiden.auth.tables import api_keys
from ekiden.clock import Clock
from ekiden.errors import Invalid, NotFound

Scope = Literal["ingest", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "admin")
_PREFIXES = {"ingest": "ek_in_", "admin": "ek_ad_"}


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    scope: Scope
    prefix: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn: Connection, clock: Clock, *, scope: str, name: str = "") -> str:
    """Create a key and return its full text: the only time it is ever available."""
    if scope not in SCOPES:
        raise Invalid(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    key = _PREFIXES[scope] + secrets.token_urlsafe(32)
    conn.execute(
        insert(api_keys).values(
            name=name,
            scope=scope,
            prefix=key[:12],
            key_hash=hash_key(key),
            created_at=clock.now(),
        )
    )
    return key


def find_key(conn: Connection, key: str) -> ApiKey | None:
    """The live key matching ``key``, or None when it is unknown or revoked."""
    row = conn.execute(
        select(api_keys.c.id, api_keys.c.name, api_keys.c.scope, api_keys.c.prefix).where(
            api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    return ApiKey(id=row.id, name=row.name, scope=row.scope, prefix=row.prefix)


def revoke_key(conn: Connection, clock: Clock, key_id: int) -> None:
    done = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    if done.rowcount == 0:
        raise NotFound(f"no live API key with id {key_id}")
