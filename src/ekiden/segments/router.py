"""REST API for segments and lists under /api/segments and /api/lists (admin key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ekiden.contacts.service import find_contact_id
from ekiden.errors import Invalid, TooLarge
from ekiden.segments import lists as list_service
from ekiden.segments import service
from ekiden.segments.members import Member, member_page, members_csv
from ekiden.segments.models import (
    ListIn,
    Refreshed,
    Segment,
    SegmentChanges,
    SegmentIn,
    StaticList,
)
from ekiden.web.deps import AdminKey, Conn, Ctx, ReadConn
from ekiden.web.pagination import DEFAULT_LIMIT, Page, check_limit

router = APIRouter(prefix="/api", tags=["segments"])


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filter: dict[str, Any]


class PreviewOut(BaseModel):
    count: int
    sample: list[int] = Field(description="ids of the first matching contacts")


class MembersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_ids: list[int] = Field(default_factory=list, max_length=10_000)
    emails: list[str] = Field(default_factory=list, max_length=10_000)


class MembersChanged(BaseModel):
    changed: int
    unknown_emails: list[str] = Field(default_factory=list)


@router.get("/segments")
def list_segments(_: AdminKey, conn: ReadConn) -> Page[Segment]:
    return Page(items=service.list_segments(conn), next=None)


@router.post("/segments", status_code=201)
def create_segment(
    body: SegmentIn, _: AdminKey, conn: Conn, ctx: Ctx, build: bool = True
) -> Segment:
    """Create a segment; with ``build`` (default) its membership is computed at once."""
    created = service.create_segment(conn, ctx.clock, body, ctx.settings.zone)
    if build:
        service.rebuild_segment(conn, ctx.clock, created.slug, ctx.settings.zone)
    return service.get_segment(conn, created.slug)


@router.post("/segments/preview")
def preview(body: PreviewIn, _: AdminKey, conn: ReadConn, ctx: Ctx) -> PreviewOut:
    """Size of an unsaved filter now, and a sample of the contacts it selects."""
    count, sample = service.preview(conn, ctx.clock, body.filter, ctx.settings.zone)
    return PreviewOut(count=count, sample=sample)


@router.get("/segments/{slug}")
def get_segment(slug: str, _: AdminKey, conn: ReadConn) -> Segment:
    return service.get_segment(conn, slug)


@router.patch("/segments/{slug}")
def update_segment(
    slug: str, body: SegmentChanges, _: AdminKey, conn: Conn, ctx: Ctx, build: bool = True
) -> Segment:
    """Change a segment; a new filter makes a new version, rebuilt at once with ``build``."""
    updated = service.update_segment(conn, ctx.clock, slug, body, ctx.settings.zone)
    if build and not updated.built:
        service.rebuild_segment(conn, ctx.clock, slug, ctx.settings.zone)
    return service.get_segment(conn, slug)


@router.delete("/segments/{slug}", status_code=204)
def archive_segment(slug: str, _: AdminKey, conn: Conn, ctx: Ctx) -> Response:
    service.archive_segment(conn, ctx.clock, slug)
    return Response(status_code=204)


@router.post("/segments/{slug}/refresh")
def refresh_segment(slug: str, _: AdminKey, conn: Conn, ctx: Ctx) -> Refreshed:
    """Full rebuild now (normally unnecessary: membership follows changes by itself)."""
    return service.rebuild_segment(conn, ctx.clock, slug, ctx.settings.zone)


@router.get("/segments/{slug}/members")
def segment_members(
    slug: str,
    _: AdminKey,
    conn: ReadConn,
    cursor: str | None = None,
    limit: int = Query(DEFAULT_LIMIT),
) -> Page[Member]:
    segment = service.get_segment(conn, slug)
    return _page(conn, "segment", segment.id, cursor, limit)


@router.get("/segments/{slug}/members.csv")
def segment_members_csv(slug: str, _: AdminKey, conn: ReadConn, ctx: Ctx) -> StreamingResponse:
    segment = service.get_segment(conn, slug)
    return _csv(ctx, "segment", segment.id, slug)


@router.get("/lists")
def all_lists(_: AdminKey, conn: ReadConn) -> Page[StaticList]:
    return Page(items=list_service.all_lists(conn), next=None)


@router.post("/lists", status_code=201)
def create_list(body: ListIn, _: AdminKey, conn: Conn, ctx: Ctx) -> StaticList:
    return list_service.create_list(conn, ctx.clock, body)


@router.get("/lists/{slug}")
def get_list(slug: str, _: AdminKey, conn: ReadConn) -> StaticList:
    return list_service.get_list(conn, slug)


@router.delete("/lists/{slug}", status_code=204)
def archive_list(slug: str, _: AdminKey, conn: Conn, ctx: Ctx) -> Response:
    list_service.archive_list(conn, ctx.clock, slug)
    return Response(status_code=204)


def _resolve(conn: Conn, body: MembersIn) -> tuple[list[int], list[str]]:
    if not body.contact_ids and not body.emails:
        raise Invalid("give contact_ids or emails")
    ids = list(body.contact_ids)
    unknown: list[str] = []
    for email in body.emails:
        found = find_contact_id(conn, email=email)
        if found is None:
            unknown.append(email)
        else:
            ids.append(found)
    return ids, unknown


@router.post("/lists/{slug}/members")
def add_list_members(
    slug: str, body: MembersIn, _: AdminKey, conn: Conn, ctx: Ctx
) -> MembersChanged:
    """Add contacts by id or email. Unknown ids fail the whole request; unknown emails are
    reported back (a list never creates contacts)."""
    ids, unknown = _resolve(conn, body)
    added = list_service.add_members(conn, ctx.clock, slug, ids, source="api") if ids else 0
    return MembersChanged(changed=added, unknown_emails=unknown)


MAX_CSV_BYTES = 20 * 1024 * 1024


class CsvMembersChanged(MembersChanged):
    unknown_lines: list[int] = Field(default_factory=list, description="CSV lines not found")


@router.post(
    "/lists/{slug}/members.csv",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def add_list_members_csv(
    slug: str, request: Request, _: AdminKey, ctx: Ctx, remove: bool = False
) -> CsvMembersChanged:
    """Add (or with ``remove=true`` remove) the contacts of a CSV file's email column.
    Addresses that are not contacts are reported with their line numbers."""
    data = await read_limited(request, MAX_CSV_BYTES)
    with ctx.engine.begin() as conn:
        rows = list_service.emails_from_csv(data)
        list_service.get_list(conn, slug)
        ids: list[int] = []
        unknown: list[str] = []
        lines: list[int] = []
        for line, email in rows:
            try:
                found = find_contact_id(conn, email=email)
            except Invalid:
                found = None
            if found is None:
                unknown.append(email)
                lines.append(line)
            else:
                ids.append(found)
        if remove:
            changed = list_service.remove_members(conn, ctx.clock, slug, ids)
        else:
            changed = list_service.add_members(conn, ctx.clock, slug, ids, source="csv")
    return CsvMembersChanged(changed=changed, unknown_emails=unknown, unknown_lines=lines)


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) without buffering it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the file is larger than {limit // (1024 * 1024)} MB")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise TooLarge(f"the file is larger than {limit // (1024 * 1024)} MB")
    return bytes(body)


@router.post("/lists/{slug}/members/remove")
def remove_list_members(
    slug: str, body: MembersIn, _: AdminKey, conn: Conn, ctx: Ctx
) -> MembersChanged:
    ids, unknown = _resolve(conn, body)
    removed = list_service.remove_members(conn, ctx.clock, slug, ids)
    return MembersChanged(changed=removed, unknown_emails=unknown)


@router.get("/lists/{slug}/members")
def list_members(
    slug: str,
    _: AdminKey,
    conn: ReadConn,
    cursor: str | None = None,
    limit: int = Query(DEFAULT_LIMIT),
) -> Page[Member]:
    target = list_service.get_list(conn, slug)
    return _page(conn, "list", target.id, cursor, limit)


@router.get("/lists/{slug}/members.csv")
def list_members_csv(slug: str, _: AdminKey, conn: ReadConn, ctx: Ctx) -> StreamingResponse:
    target = list_service.get_list(conn, slug)
    return _csv(ctx, "list", target.id, slug)


def _page(conn: ReadConn, kind: str, owner: int, cursor: str | None, limit: int) -> Page[Member]:
    items, after = member_page(conn, kind, owner, cursor=cursor, limit=check_limit(limit))
    return Page(items=items, next=after)


def _csv(ctx: Ctx, kind: str, owner: int, slug: str) -> StreamingResponse:
    return StreamingResponse(
        members_csv(ctx.engine, kind, owner),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{kind}-{slug}.csv"'},
    )
