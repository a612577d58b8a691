"""Browser endpoints: the snippet ``GET /t.js`` and the no-JS pixel ``GET /t/p.gif``.

The snippet's own events go to ``POST /v1/batch`` (tracking/router.py); these two routes only
serve the script (with the server's settings templated in) and record pixel hits.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from ekiden.tracking.pixel import MAX_KEY, MAX_URL, PixelHit, new_anonymous_id, record_pixel_hit
from ekiden.web.deps import AppContext, Ctx

SNIPPET_PATH = Path(__file__).parent / "static" / "t.js"
CONFIG_MARKER = re.compile(r"/\*EKIDEN_CONFIG\*/.*?/\*EKIDEN_CONFIG_END\*/")
SNIPPET_MAX_AGE = 3600  # a changed snippet reaches every site within the hour
PIXEL_COOKIE = "ekiden_pid"
# 1x1 transparent GIF89a
PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
PIXEL_HEADERS = {
    "Cache-Control": "no-store, max-age=0",
    "Pragma": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
MAX_QUERY = 8 * 1024

router = APIRouter(tags=["browser"])


@dataclass(frozen=True)
class Snippet:
    body: bytes
    gzipped: bytes
    etag: str


def _config_json(base_url: str, cookie_days: int) -> str:
    """The settings the snippet needs, as a JSON literal safe to place in JavaScript."""
    config = {"base": base_url, "cookieDays": cookie_days}
    text = json.dumps(config, ensure_ascii=True, sort_keys=True)
    # nothing in it can end a script element or open a comment, whatever the values are
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def render_snippet(base_url: str, cookie_days: int) -> Snippet:
    """t.js with the server's settings in place of its defaults; rendered once per setting."""
    source = SNIPPET_PATH.read_text(encoding="utf-8")
    if not CONFIG_MARKER.search(source):
        raise RuntimeError(f"{SNIPPET_PATH} lost its /*EKIDEN_CONFIG*/ marker")
    settings_json = _config_json(base_url, cookie_days)
    body = CONFIG_MARKER.sub(lambda _: settings_json, source, count=1).encode()
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Snippet(body=body, gzipped=gzip.compress(body, mtime=0), etag=f'"{digest}"')


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags or etag.replace('"', '-gz"') in tags


@router.get("/t.js", include_in_schema=False)
def snippet(request: Request, ctx: Ctx) -> Response:
    """The browser snippet. Cached for an hour; revalidated with its ETag; gzip when asked."""
    rendered = render_snippet(ctx.settings.base_url, ctx.settings.cookie_days)
    compress = "gzip" in request.headers.get("accept-encoding", "").lower()
    etag = rendered.etag.replace('"', '-gz"') if compress else rendered.etag
    headers = {
        "Cache-Control": f"public, max-age={SNIPPET_MAX_AGE}",
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if _etag_matches(request.headers.get("if-none-match"), rendered.etag):
        return Response(status_code=304, headers=headers)
    if compress:
        headers["Content-Encoding"] = "gzip"
    body = rendered.gzipped if compress else rendered.body
    return Response(body, media_type="application/javascript; charset=utf-8", headers=headers)


def _param(request: Request, name: str, limit: int) -> str:
    """A query parameter, '' when absent; oversized values are cut at ``limit + 1`` so that
    the caller can tell (identifiers) or truncate (URLs)."""
    return request.query_params.get(name, "")[: limit + 1]


def _store_hit(ctx: AppContext, hit: PixelHit) -> bool:
    with ctx.engine.begin() as conn:
        return record_pixel_hit(conn, ctx.clock, ctx.settings, hit)


@router.get("/t/p.gif", include_in_schema=False)
async def pixel(request: Request, ctx: Ctx) -> Response:
    """``?k=KEY&aid=ANON_ID&u=URL&r=REFERRER&e=EVENT``. Always the same 1x1 GIF, so that a
    page cannot learn from it whether a key is valid; only a valid hit is stored.

    Without ``aid`` the pixel's own cookie on Ekiden's domain identifies the browser."""
    response = Response(PIXEL, media_type="image/gif", headers=PIXEL_HEADERS)
    anonymous_id = _param(request, "aid", 64) or request.cookies.get(PIXEL_COOKIE, "")[:65]
    if not anonymous_id:
        anonymous_id = new_anonymous_id()
        https = ctx.settings.base_url.startswith("https://")
        response.set_cookie(
            PIXEL_COOKIE,
            anonymous_id,
            max_age=ctx.settings.cookie_days * 86400,
            path="/t/",
            httponly=True,
            secure=https,
            # cross-site images only carry the cookie with SameSite=None, which needs Secure
            samesite="none" if https else "lax",
        )
    if len(request.url.query) > MAX_QUERY:
        return response
    hit = PixelHit(
        key=_param(request, "k", MAX_KEY),
        anonymous_id=anonymous_id,
        # without u, the page the image sits on (as far as the browser's referrer policy says)
        url=_param(request, "u", MAX_URL) or request.headers.get("referer", "")[:MAX_URL],
        referrer=_param(request, "r", MAX_URL),
        event=_param(request, "e", 64),
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    await run_in_threadpool(_store_hit, ctx, hit)
    return response
