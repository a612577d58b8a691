"""Writing side effects into the outbox, in the caller's transaction.

A capability that decides to act (send an email, call a webhook) calls ``enqueue`` in the
same transaction as the decision: if that transaction rolls back, nothing is sent; if it
commits, the worker delivers the row (``ekiden.outbox.dispatcher``). The idempotency key
makes a repeated decision harmless: the second ``enqueue`` with the same key writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.outbox.models import OutboxEntry, Status
from ekiden.outbox.tables import outbox

MAX_KEY_LENGTH = 255


def enqueue(
    conn: Connection,
    clock: Clock,
    *,
    kind: str,
    key: str,
    payload: dict[str, Any],
    contact_id: int | None = None,
    due_at: datetime | None = None,
) -> int | None:
    """Queue one side effect; returns its id, or None when ``key`` was already enqueued
    (then nothing is written, whatever the state of the earlier row)."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Invalid(f"outbox key must be 1 to {MAX_KEY_LENGTH} characters", details={"key": key})
    if not kind:
        raise Invalid("outbox kind must not be empty")
    now = clock.now()
    due = due_at or now
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(outbox)
        .values(
            kind=kind,
            key=key,
            payload=payload,
            contact_id=contact_id,
            status=Status.PENDING,
            attempts=0,
            due_at=due,
            next_attempt_at=due,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(outbox.c.id)
    )
    new_id = conn.execute(statement).scalar_one_or_none()
    return None if new_id is None else int(new_id)


@dataclass(frozen=True)
class NewEntry:
    """One side effect for ``enqueue_many`` (the arguments of ``enqueue``)."""

    kind: str
    key: str
    payload: dict[str, Any]
    contact_id: int | None = None
    due_at: datetime | None = None


ENQUEUE_CHUNK = 500


def enqueue_many(conn: Connection, clock: Clock, entries: Sequence[NewEntry]) -> dict[str, int]:
    """Queue many side effects in the caller's transaction, one INSERT per 500 rows; returns
    ``{key: new id}`` for the keys that were new. A key already enqueued (earlier, or twice in
    ``entries``: the first wins) writes nothing and is absent from the answer, as with
    ``enqueue``. Invalid (nothing written) when a key or kind is empty or too long."""
    for entry in entries:
        if not entry.key or len(entry.key) > MAX_KEY_LENGTH:
            raise Invalid(
                f"outbox key must be 1 to {MAX_KEY_LENGTH} characters", details={"key": entry.key}
            )
        if not entry.kind:
            raise Invalid("outbox kind must not be empty", details={"key": entry.key})
    unique = list({entry.key: entry for entry in reversed(entries)}.values())[::-1]
    now = clock.now()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    created: dict[str, int] = {}
    for start in range(0, len(unique), ENQUEUE_CHUNK):
        rows = [
            {
                "kind": entry.kind,
                "key": entry.key,
                "payload": entry.payload,
                "contact_id": entry.contact_id,
                "status": Status.PENDING,
                "attempts": 0,
                "due_at": entry.due_at or now,
                "next_attempt_at": entry.due_at or now,
                "created_at": now,
            }
            for entry in unique[start : start + ENQUEUE_CHUNK]
        ]
        statement = (
            dialect.insert(outbox)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(outbox.c.id, outbox.c.key)
        )
        created.update({key: int(new_id) for new_id, key in conn.execute(statement)})
    return created


def cancel(conn: Connection, *, key: str) -> bool:
    """Cancel a side effect that has not started; returns False when it is unknown or
    already being delivered, sent or failed."""
    result = conn.execute(
        update(outbox)
        .where(outbox.c.key == key, outbox.c.status == Status.PENDING)
        .values(status=Status.CANCELLED)
    )
    return result.rowcount > 0


def entry_by_key(conn: Connection, key: str) -> OutboxEntry | None:
    """The outbox row for ``key``, or None when nothing was enqueued under it."""
    row = conn.execute(select(outbox).where(outbox.c.key == key)).mappings().first()
    return None if row is None else OutboxEntry.from_row(row)


def entry_by_id(conn: Connection, entry_id: int) -> OutboxEntry | None:
    row = conn.execute(select(outbox).where(outbox.c.id == entry_id)).mappings().first()
    return None if row is None else OutboxEntry.from_row(row)


def list_entries(
    conn: Connection,
    *,
    status: Status | None = None,
    kind: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[OutboxEntry]:
    """Entries newest first, optionally of one status / kind, with ids below ``before_id``."""
    query = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(outbox.c.status == status)
    if kind is not None:
        query = query.where(outbox.c.kind == kind)
    if before_id is not None:
        query = query.where(outbox.c.id < before_id)
    return [OutboxEntry.from_row(row) for row in conn.execute(query).mappings()]


def retry_failed(conn: Connection, clock: Clock, entry_id: int) -> OutboxEntry:
    """Make a failed entry due again now (after the cause was fixed). Raises NotFound for an
    unknown id and Conflict when the entry has not failed."""
    entry = entry_by_id(conn, entry_id)
    if entry is None:
        raise NotFound(f"no outbox entry {entry_id}")
    if entry.status is not Status.FAILED:
        raise Conflict(
            f"outbox entry {entry_id} is {entry.status}, only failed ones can be retried"
        )
    now = clock.now()
    conn.execute(
        update(outbox)
        .where(outbox.c.id == entry_id, outbox.c.status == Status.FAILED)
        .values(status=Status.PENDING, next_attempt_at=now, attempts=0)
    )
    retried = entry_by_id(conn, entry_id)
    assert retried is not None
    return retried
