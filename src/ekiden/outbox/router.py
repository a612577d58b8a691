"""HTTP: bounce reports in (``POST /api/bounces``) and the outbox's state (admin key)."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ekiden.errors import Forbidden, NotFound, TooLarge
from ekiden.outbox.bounces import IngestResult, ingest_report
from ekiden.outbox.dsn import MAX_REPORT_BYTES
from ekiden.outbox.models import OutboxEntry, Status
from ekiden.outbox.service import entry_by_id, list_entries, retry_failed
from ekiden.web.deps import AdminKey, Conn, Ctx, ReadConn, lookup_key
from ekiden.web.pagination import DEFAULT_LIMIT, Page, check_limit

router = APIRouter(prefix="/api", tags=["delivery"])


def require_bounce_sender(request: Request, ctx: Ctx) -> None:
    """The ``bounce_key`` setting or an admin key; 401 without a key, 403 for another key."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    bounce_key = ctx.settings.bounce_key
    if token and bounce_key and hmac.compare_digest(token.encode(), bounce_key.encode()):
        return
    key = lookup_key(ctx, token or None)
    if key.scope != "admin":
        raise Forbidden("bounce reports need the bounce key or an admin key")


BounceSender = Annotated[None, Depends(require_bounce_sender)]


class OutboxItem(BaseModel):
    id: int
    kind: str
    key: str
    contact_id: int | None
    status: str
    attempts: int
    due_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime
    message_id: str | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, entry: OutboxEntry) -> OutboxItem:
        payload = dict(entry.payload)
        if "secret" in payload:
            payload["secret"] = "***"  # noqa: S105 (never show a stored secret)
        return cls(
            id=entry.id,
            kind=entry.kind,
            key=entry.key,
            contact_id=entry.contact_id,
            status=entry.status.value,
            attempts=entry.attempts,
            due_at=entry.due_at,
            next_attempt_at=entry.next_attempt_at,
            last_error=entry.last_error,
            sent_at=entry.sent_at,
            created_at=entry.created_at,
            message_id=entry.message_id,
            payload=payload,
        )


@router.post(
    "/bounces",
    openapi_extra={"requestBody": {"content": {"message/rfc822": {"schema": {"type": "string"}}}}},
)
async def post_bounce(
    request: Request,
    _: BounceSender,
    ctx: Ctx,
    recipient: Annotated[str | None, Query(max_length=320)] = None,
) -> IngestResult:
    """Ingest one bounce (RFC 3464 DSN) or complaint (RFC 5965 ARF) as a raw message body.
    ``recipient``: the envelope recipient, when the MTA knows it (the VERP address)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REPORT_BYTES:
        raise TooLarge(f"a bounce message may be at most {MAX_REPORT_BYTES} bytes")
    raw = await request.body()
    if len(raw) > MAX_REPORT_BYTES:
        raise TooLarge(f"a bounce message may be at most {MAX_REPORT_BYTES} bytes")

    def ingest() -> IngestResult:
        with ctx.engine.begin() as conn:
            return ingest_report(conn, ctx.clock, ctx.settings, raw, recipient=recipient)

    return await run_in_threadpool(ingest)


@router.get("/outbox")
def get_outbox(
    _: AdminKey,
    conn: ReadConn,
    status: Status | None = None,
    kind: str | None = None,
    cursor: Annotated[int | None, Query(description="the id to continue below")] = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[OutboxItem]:
    """Outbox entries newest first, e.g. ``?status=failed`` for what could not be delivered."""
    check_limit(limit)
    entries = list_entries(conn, status=status, kind=kind, before_id=cursor, limit=limit + 1)
    items = [OutboxItem.of(e) for e in entries[:limit]]
    more = len(entries) > limit
    return Page(items=items, next=str(items[-1].id) if more and items else None)


@router.get("/outbox/{entry_id}")
def get_outbox_entry(entry_id: int, _: AdminKey, conn: ReadConn) -> OutboxItem:
    entry = entry_by_id(conn, entry_id)
    if entry is None:
        raise NotFound(f"no outbox entry {entry_id}")
    return OutboxItem.of(entry)


@router.post("/outbox/{entry_id}/retry")
def retry_outbox_entry(entry_id: int, _: AdminKey, conn: Conn, ctx: Ctx) -> OutboxItem:
    """Make a failed entry due again now (e.g. after fixing a webhook target)."""
    return OutboxItem.of(retry_failed(conn, ctx.clock, entry_id))
