"""Reading who is in a segment or on a list: paged for the API, streamed for CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column, Connection, Engine, Table, select

from ekiden.contacts.tables import contacts
from ekiden.db.engine import read_connection
from ekiden.segments.tables import list_members, segment_members
from ekiden.web.pagination import decode_cursor, encode_cursor

CSV_COLUMNS = ("id", "email", "last_name", "first_name", "company", "job_title", "since")


class Member(BaseModel):
    id: int
    email: str | None
    last_name: str | None
    first_name: str | None
    company: str | None
    job_title: str | None
    since: datetime


def _membership(kind: str) -> tuple[Table, Column[Any], Column[Any]]:
    if kind == "segment":
        return segment_members, segment_members.c.segment_id, segment_members.c.entered_at
    return list_members, list_members.c.list_id, list_members.c.added_at


def member_page(
    conn: Connection, kind: str, owner_id: int, *, cursor: str | None, limit: int
) -> tuple[list[Member], str | None]:
    """Members in contact-id order, ``limit`` at a time, continuing after ``cursor``."""
    table, owner, since = _membership(kind)
    after = decode_cursor(cursor, fields=("id",))
    query = (
        select(
            contacts.c.id,
            contacts.c.email,
            contacts.c.last_name,
            contacts.c.first_name,
            contacts.c.company,
            contacts.c.job_title,
            since.label("since"),
        )
        .join(table, table.c.contact_id == contacts.c.id)
        .where(owner == owner_id)
        .order_by(contacts.c.id)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(contacts.c.id > int(after["id"]))
    rows = [Member.model_validate(r, from_attributes=True) for r in conn.execute(query)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor({"id": rows[-1].id}) if more and rows else None


def _safe(value: Any) -> Any:
    # a cell starting with = + - @ would run as a formula in Excel (CSV injection)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def members_csv(engine: Engine, kind: str, owner_id: int, *, chunk: int = 5000) -> Iterator[str]:
    """CSV text of all members, produced chunk by chunk (constant memory)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    cursor: str | None = None
    while True:
        with read_connection(engine) as conn:
            rows, cursor = member_page(conn, kind, owner_id, cursor=cursor, limit=chunk)
        for row in rows:
            writer.writerow([_safe(getattr(row, c)) for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if cursor is None:
            return
