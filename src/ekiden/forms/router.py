"""Admin REST API for form definitions under /api/forms (admin key)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel

from ekiden.forms import store
from ekiden.forms.definition import FormDefinition, FormKind
from ekiden.web.deps import AdminKey, Conn, Ctx
from ekiden.web.pagination import DEFAULT_LIMIT, Page, check_limit

# The admin key is checked before the request's transaction opens (``AdminKey`` first): on
# SQLite the key look-up could not start while this request already holds the write lock.
router = APIRouter(prefix="/api/forms", tags=["forms"])

# The body is validated by parse_definition (not by FastAPI) so that errors name the bad
# part as "fields[2].options: …"; the schema is still published in the OpenAPI document.
_DEFINITION_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": FormDefinition.model_json_schema()}},
    }
}


class FormOut(BaseModel):
    """A stored form: its definition plus where it is published."""

    id: int
    slug: str
    name: str
    kind: FormKind
    definition: FormDefinition
    hosted_url: str
    embed_url: str
    embed_html: str
    archived: bool
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime
    spam_count: int


def _out(ctx: Ctx, form: store.StoredForm) -> FormOut:
    base = ctx.settings.base_url.rstrip("/")
    slug = form.slug
    return FormOut(
        id=form.id,
        slug=slug,
        name=form.definition.name,
        kind=form.definition.kind,
        definition=form.definition,
        hosted_url=f"{base}/f/{slug}",
        embed_url=f"{base}/f/{slug}.js",
        embed_html=f'<div data-ekiden-form="{slug}"></div>\n'
        f'<script src="{base}/f/{slug}.js" async></script>',
        archived=form.archived,
        archived_at=form.archived_at,
        created_at=form.created_at,
        updated_at=form.updated_at,
        spam_count=form.spam_count,
    )


JsonBody = Annotated[Any, Body()]


@router.post("", status_code=201, openapi_extra=_DEFINITION_BODY)
def create_form(body: JsonBody, _: AdminKey, conn: Conn, ctx: Ctx) -> FormOut:
    """Create a form. 422 names each bad part of the definition; 409 when the slug is taken."""
    return _out(ctx, store.create_form(conn, ctx.clock, body))


@router.get("")
def list_forms(
    _: AdminKey,
    conn: Conn,
    ctx: Ctx,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
    kind: FormKind | None = None,
    include_archived: Annotated[bool, Query()] = False,
) -> Page[FormOut]:
    """Forms, oldest first; archived ones with ``include_archived=true``."""
    page = store.list_forms(
        conn, limit=check_limit(limit), cursor=cursor, kind=kind, include_archived=include_archived
    )
    return Page(items=[_out(ctx, f) for f in page.items], next=page.next)


@router.get("/{slug}")
def get_form(slug: str, _: AdminKey, conn: Conn, ctx: Ctx) -> FormOut:
    return _out(ctx, store.get_form(conn, slug))


@router.put("/{slug}", openapi_extra=_DEFINITION_BODY)
def replace_form(slug: str, body: JsonBody, _: AdminKey, conn: Conn, ctx: Ctx) -> FormOut:
    """Replace the whole definition (the slug may change; 409 when the new one is taken)."""
    return _out(ctx, store.update_form(conn, ctx.clock, slug, body, partial=False))


@router.patch("/{slug}")
def patch_form(slug: str, body: JsonBody, _: AdminKey, conn: Conn, ctx: Ctx) -> FormOut:
    """Replace only the top-level parts given (e.g. ``{"success": {...}}``)."""
    return _out(ctx, store.update_form(conn, ctx.clock, slug, body, partial=True))


@router.post("/{slug}/archive")
def archive_form(slug: str, _: AdminKey, conn: Conn, ctx: Ctx) -> FormOut:
    """Take the form offline: its page, embed and submit endpoint answer 404. Data is kept."""
    return _out(ctx, store.set_archived(conn, ctx.clock, slug, archived=True))


@router.post("/{slug}/restore")
def restore_form(slug: str, _: AdminKey, conn: Conn, ctx: Ctx) -> FormOut:
    """Put an archived form back online."""
    return _out(ctx, store.set_archived(conn, ctx.clock, slug, archived=False))
