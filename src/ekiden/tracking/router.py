"""The Segment HTTP Tracking API: ``POST /v1/identify|track|page|screen|group|alias|batch``.

The write key comes as the HTTP Basic user name (Segment's and RudderStack's server SDKs) or
as ``writeKey`` in the JSON body (analytics.js, ``navigator.sendBeacon``). Bodies may be
``application/json`` or ``text/plain`` (what sendBeacon can send without a CORS preflight)
and gzip-compressed. The body is read with a hard cap: nothing larger than the limit is ever
buffered, before or after decompression.
"""

from __future__ import annotations

import fcntl
import threading
import weakref
import zlib
from contextlib import AbstractContextManager, nullcontext
from typing import Any, BinaryIO

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from ekiden.auth.keys import find_key
from ekiden.db.engine import read_connection
from ekiden.errors import EkidenError, Malformed, TooLarge, Unauthorized
from ekiden.tracking.ingest import (
    IngestResult,
    check_messages,
    ingest_messages,
    is_retryable,
    read_envelope,
)
from ekiden.web.deps import AppContext, basic_username, get_ctx
from ekiden.web.errors import error_response

KINDS = ("identify", "track", "page", "screen", "group", "alias", "batch")
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}
_SUCCESS = b'{"success":true}'
RETRIES = 5

router = APIRouter(tags=["tracking"])


class UnsupportedMediaType(EkidenError):
    status = 415
    code = "unsupported_media_type"


def _limit_text(kind: str, limit: int) -> str:
    which = "batch" if kind == "batch" else "per-event"
    return f"the {limit // 1024} KB {which} limit ({limit:,} bytes)"


async def read_capped_body(request: Request, *, limit: int, kind: str) -> bytes:
    """The request body, decompressed; TooLarge as soon as it exceeds ``limit`` bytes."""
    too_large = TooLarge(
        f"the request body is larger than {_limit_text(kind, limit)}",
        code="batch_too_large" if kind == "batch" else "event_too_large",
        details={"limit": limit},
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    data = b"".join(chunks)
    if encoding != "gzip":
        return data
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise Malformed("the body is not valid gzip data") from None
    if len(plain) > limit or inflater.unconsumed_tail:
        raise too_large
    if not inflater.eof:
        raise Malformed("the gzip body is truncated")
    return plain


def _check_media_type(request: Request) -> None:
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media not in ("application/json", "text/plain", ""):
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not accepted; send application/json or text/plain JSON"
        )


def _store(
    ctx: AppContext, kind: str, key: str | None, data: Any, request: Request, *, beacon: bool
) -> IngestResult:
    """Check the key, then unwrap and ingest the body in one transaction."""
    if not key and isinstance(data, dict) and isinstance(data.get("writeKey"), str):
        key = data["writeKey"]
    if not key:
        raise Unauthorized(
            "a write key is required: send it as the HTTP Basic user name "
            "or as writeKey in the JSON body"
        )
    client_ip = request.client.host if request.client else None
    user_agent = request.headers.get("user-agent") if beacon else None
    source = "browser" if beacon else "api"
    # The key, then the messages, are checked on a reading connection, so that on SQLite
    # the write lock is held for the writes only.
    with read_connection(ctx.engine) as conn:
        if find_key(conn, key) is None:
            raise Unauthorized("the write key is unknown or revoked")
        envelope = read_envelope(data, kind=kind)
        checked = check_messages(
            conn, ctx.clock, ctx.settings, envelope.messages, request_ip=client_ip,
            source=source, sent_at=envelope.sent_at,
            # a beacon comes from the visitor's own browser; an SDK's agent is not theirs
            request_user_agent=user_agent,
        )  # fmt: skip
    for attempt in range(1, RETRIES + 1):
        try:
            with _one_writer(ctx.engine), ctx.engine.begin() as conn:
                return ingest_messages(
                    conn, ctx.clock, ctx.settings, envelope.messages, request_ip=client_ip,
                    source=source, sent_at=envelope.sent_at, request_user_agent=user_agent,
                    checked=checked,
                )  # fmt: skip
        except DBAPIError as exc:
            # PostgreSQL aborts one of two batches that wait on each other's rows (a
            # deadlock); the aborted one left nothing behind and simply runs again.
            if attempt == RETRIES or not is_retryable(exc):
                raise
    raise AssertionError("unreachable")  # pragma: no cover


_writer_locks: weakref.WeakKeyDictionary[Engine, _WriterLock] = weakref.WeakKeyDictionary()
_writer_locks_guard = threading.Lock()


class _WriterLock:
    """One writer at a time on a SQLite file, across the threads of this process (a lock)
    and across the server's processes (``flock`` on a file beside the database): a waiting
    request starts the moment the previous one commits, where SQLite's own busy wait polls
    with growing sleeps."""

    def __init__(self, path: str | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = path
        self._file: BinaryIO | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._path is None:
            return
        try:
            # opened for each hold (a few microseconds a batch), so no file outlives its use
            self._file = open(self._path, "a+b")
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
        except BaseException:
            self._release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file lets the lock go
            self._file = None
        self._thread_lock.release()


def _one_writer(engine: Engine) -> AbstractContextManager[Any]:
    """On SQLite, ingestion requests write one after the other (see _WriterLock).
    PostgreSQL runs them side by side."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _writer_locks_guard:
        lock = _writer_locks.get(engine)
        if lock is None:
            database = engine.url.database
            on_disk = database and database != ":memory:" and not database.startswith("file:")
            lock = _writer_locks[engine] = _WriterLock(
                f"{database}.write-lock" if on_disk else None
            )
    return lock


async def _ingest(kind: str, request: Request) -> Response:
    ctx = get_ctx(request)
    settings = ctx.settings
    limit = settings.max_batch_bytes if kind == "batch" else settings.max_event_bytes
    try:
        _check_media_type(request)
        key = basic_username(request)
        body = await read_capped_body(request, limit=limit, kind=kind)
        try:
            data: Any = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"the request body is not valid JSON: {exc}") from None
        beacon = request.headers.get("content-type", "").lower().startswith("text/plain")
        await run_in_threadpool(_store, ctx, kind, key, data, request, beacon=beacon)
    except EkidenError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        response.headers.update(CORS_HEADERS)
        return response
    return Response(_SUCCESS, media_type="application/json", headers=CORS_HEADERS)


def _endpoint(kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return await _ingest(kind, request)

    endpoint.__name__ = f"ingest_{kind}"
    endpoint.__doc__ = f'Segment-compatible `{kind}` call. Answers {{"success": true}}.'
    return endpoint


async def preflight(request: Request) -> Response:
    """CORS preflight for browsers posting to /v1/* from the tracked site."""
    return Response(status_code=204, headers=CORS_HEADERS)


for _kind in KINDS:
    router.add_api_route(f"/v1/{_kind}", _endpoint(_kind), methods=["POST"])
    router.add_api_route(f"/v1/{_kind}", preflight, methods=["OPTIONS"], include_in_schema=False)
