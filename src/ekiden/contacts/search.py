"""Searching and paging through contacts (the admin list, the API, exports)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, exists, func, or_, select

from ekiden.contacts.models import Contact
from ekiden.contacts.tables import contact_tags, contacts
from ekiden.errors import Invalid, Malformed
from ekiden.web.pagination import Page, decode_cursor, encode_cursor

# Columns the free-text query looks in (substring, case-insensitive).
SEARCHED_COLUMNS = (
    contacts.c.email,
    contacts.c.last_name,
    contacts.c.first_name,
    contacts.c.last_name_kana,
    contacts.c.first_name_kana,
    contacts.c.company,
)


@dataclass(frozen=True)
class ContactFilter:
    """What to look for; every given criterion must hold (AND)."""

    q: str | None = None
    tag: str | None = None
    owner_id: int | None = None
    account_id: int | None = None
    updated_since: datetime | None = None


def search_contacts(
    conn: Connection, where: ContactFilter, *, limit: int, cursor: str | None
) -> Page[Contact]:
    """Live contacts matching ``where`` in id order, ``limit`` per page.

    ``cursor`` is the ``next`` of the previous page (Malformed when it is not one of ours).
    """
    after = decode_cursor(cursor, fields=("id",))
    if after is not None and (not isinstance(after["id"], int) or isinstance(after["id"], bool)):
        raise Malformed("the cursor is not valid; pass back the `next` value unchanged")
    if where.updated_since is not None and where.updated_since.tzinfo is None:
        raise Invalid("updated_since needs a time zone, e.g. 2026-04-01T00:00:00+09:00")
    query = select(contacts).where(contacts.c.merged_into_id.is_(None))
    if where.q:
        needle = where.q.strip().lower()
        query = query.where(
            or_(*(func.lower(col).contains(needle, autoescape=True) for col in SEARCHED_COLUMNS))
        )
    if where.tag:
        query = query.where(
            exists().where(
                contact_tags.c.contact_id == contacts.c.id, contact_tags.c.tag == where.tag.strip()
            )
        )
    if where.owner_id is not None:
        query = query.where(contacts.c.owner_id == where.owner_id)
    if where.account_id is not None:
        query = query.where(contacts.c.account_id == where.account_id)
    if where.updated_since is not None:
        query = query.where(contacts.c.updated_at >= where.updated_since)
    if after is not None:
        query = query.where(contacts.c.id > after["id"])
    rows = list(conn.execute(query.order_by(contacts.c.id).limit(limit + 1)).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    tags = _tags_for(conn, [r["id"] for r in rows])
    items = [Contact.model_validate({**r, "tags": tags.get(r["id"], [])}) for r in rows]
    return Page[Contact](
        items=items, next=encode_cursor({"id": items[-1].id}) if more and items else None
    )


def _tags_for(conn: Connection, ids: list[int]) -> dict[int, list[str]]:
    if not ids:
        return {}
    found: dict[int, list[str]] = {}
    rows = conn.execute(
        select(contact_tags.c.contact_id, contact_tags.c.tag)
        .where(contact_tags.c.contact_id.in_(ids))
        .order_by(contact_tags.c.tag)
    )
    for row in rows:
        found.setdefault(row.contact_id, []).append(row.tag)
    return found
