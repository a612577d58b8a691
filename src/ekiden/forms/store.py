"""Storing form definitions: create, read, list, update, archive."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.contacts.customfields import list_fields
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.forms.definition import FormDefinition, parse_definition
from ekiden.forms.tables import forms
from ekiden.segments.lists import all_lists
from ekiden.web.pagination import Page, decode_cursor, encode_cursor


class StoredForm(BaseModel):
    """A form as stored, with its bookkeeping."""

    id: int
    definition: FormDefinition
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    spam_count: int

    @property
    def slug(self) -> str:
        return self.definition.slug

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


def _check_custom_fields(conn: Connection, definition: FormDefinition) -> None:
    """Every ``custom.<key>`` field must name a defined custom field, and every list in
    ``add_to_lists`` an existing static list."""
    defined = {f.key for f in list_fields(conn)}
    problems = [
        (f"fields[{i}].key", f"custom field {f.key.removeprefix('custom.')!r} is not defined")
        for i, f in enumerate(definition.fields)
        if f.target == "custom" and f.key.removeprefix("custom.") not in defined
    ]
    live_lists = {lst.slug for lst in all_lists(conn)}
    problems += [
        (f"add_to_lists[{i}]", f"there is no list {slug!r}")
        for i, slug in enumerate(definition.add_to_lists)
        if slug not in live_lists
    ]
    if problems:
        raise Invalid(
            "; ".join(f"{path}: {msg}" for path, msg in problems),
            code="invalid_form",
            details=[{"path": path, "message": msg} for path, msg in problems],
        )


def _row_values(definition: FormDefinition) -> dict[str, Any]:
    return {
        "slug": definition.slug,
        "name": definition.name,
        "kind": definition.kind,
        "definition": definition.model_dump(mode="json"),
    }


def create_form(conn: Connection, clock: Clock, data: Any) -> StoredForm:
    """Validate and store a new form. Invalid (422) for a bad definition, Conflict (409)
    when the slug is taken (archived forms keep their slug)."""
    definition = parse_definition(data)
    _check_custom_fields(conn, definition)
    now = clock.now()
    try:
        with conn.begin_nested():
            conn.execute(
                insert(forms).values(**_row_values(definition), created_at=now, updated_at=now)
            )
    except IntegrityError:
        raise Conflict(f"a form with slug {definition.slug!r} already exists") from None
    return get_form(conn, definition.slug)


def get_form(conn: Connection, slug: str, *, include_archived: bool = True) -> StoredForm:
    """The form with this slug; NotFound when unknown (or archived, unless included)."""
    query = select(forms).where(forms.c.slug == slug)
    if not include_archived:
        query = query.where(forms.c.archived_at.is_(None))
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no form with slug {slug!r}")
    return _stored(row)


def _stored(row: Any) -> StoredForm:
    return StoredForm(
        id=row["id"],
        definition=FormDefinition.model_validate(row["definition"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        archived_at=row["archived_at"],
        spam_count=row["spam_count"],
    )


def list_forms(
    conn: Connection,
    *,
    limit: int,
    cursor: str | None = None,
    kind: str | None = None,
    include_archived: bool = False,
) -> Page[StoredForm]:
    """Forms oldest first, ``limit`` per page; archived ones only when asked for."""
    after = decode_cursor(cursor, fields=("id",))
    query = select(forms).order_by(forms.c.id).limit(limit + 1)
    if after is not None:
        query = query.where(forms.c.id > int(after["id"]))
    if kind is not None:
        query = query.where(forms.c.kind == kind)
    if not include_archived:
        query = query.where(forms.c.archived_at.is_(None))
    rows = [_stored(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items=items, next=encode_cursor({"id": items[-1].id}) if more else None)


def update_form(
    conn: Connection, clock: Clock, slug: str, data: Any, *, partial: bool
) -> StoredForm:
    """Replace the definition (``partial``: only the top-level keys given are replaced).

    The slug may change; Conflict when the new one is taken. Submissions already stored keep
    the slug they were made under.
    """
    current = get_form(conn, slug)
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", code="invalid_form")
    merged = {**current.definition.model_dump(mode="json"), **data} if partial else data
    definition = parse_definition(merged)
    _check_custom_fields(conn, definition)
    try:
        with conn.begin_nested():
            conn.execute(
                update(forms)
                .where(forms.c.id == current.id)
                .values(**_row_values(definition), updated_at=clock.now())
            )
    except IntegrityError:
        raise Conflict(f"a form with slug {definition.slug!r} already exists") from None
    return get_form(conn, definition.slug)


def set_archived(conn: Connection, clock: Clock, slug: str, *, archived: bool) -> StoredForm:
    """Archive (the public page and endpoint answer 404) or restore a form. Idempotent."""
    current = get_form(conn, slug)
    if current.archived != archived:
        now = clock.now()
        conn.execute(
            update(forms)
            .where(forms.c.id == current.id)
            .values(archived_at=now if archived else None, updated_at=now)
        )
    return get_form(conn, slug)


def count_spam(conn: Connection, form_id: int) -> None:
    conn.execute(
        update(forms).where(forms.c.id == form_id).values(spam_count=forms.c.spam_count + 1)
    )
