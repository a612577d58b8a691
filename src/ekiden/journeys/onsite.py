"""On-site messages in the visitor's browser: the snippet's public endpoints.

A journey's ``onsite_message`` step stores a message for a contact (journeys/actions.py). On
each page load the snippet asks for the messages of its own browser::

    POST /t/onsite               {"writeKey": KEY, "anonymousId": AID}
    POST /t/onsite/{id}          {"writeKey": KEY, "anonymousId": AID, "action": "dismissed"}

``text/plain`` JSON bodies, as the snippet's events, so no CORS preflight is needed; the
answers carry ``Access-Control-Allow-Origin: *`` and never use cookies. The key is the site's
ingest key (the one in ``data-key``). The browser is the anonymous id of the snippet's
first-party cookie: only messages of the contact that id belongs to are answered, and an id
that belongs to nobody gets the same empty answer as a contact without messages. Requests are
limited per client address and per browser (``RATE_PER_IP``, ``RATE_PER_BROWSER`` a minute).

Showing, closing and following a message's link are events of the contact (``onsite_shown``,
``onsite_dismissed``, ``onsite_clicked``, with ``message_id`` and ``journey``), so journeys can
wait on them. A message shown with ``show: once`` is handed out once (the first request that
claims it); ``until_dismissed`` ones on every page until closed, clicked or expired.
"""

from __future__ import annotations

import threading
import time
import weakref
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from sqlalchemy import Connection, Engine, or_, select, update
from starlette.concurrency import run_in_threadpool

from ekiden.auth.keys import find_key
from ekiden.contacts.identity import contacts_for_anonymous_ids
from ekiden.contacts.tables import contacts
from ekiden.errors import EkidenError, Forbidden, Invalid, Malformed, NotFound, Unauthorized
from ekiden.i18n import gettext, pick_locale
from ekiden.journeys.tables import journeys, onsite_messages
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.machine import machine_reason
from ekiden.tracking.pixel import ANONYMOUS_ID
from ekiden.tracking.router import read_capped_body
from ekiden.web.deps import AppContext, get_ctx
from ekiden.web.errors import error_response

router = APIRouter(tags=["browser"])

MAX_BODY = 4096
MAX_MESSAGES = 3  # at most this many at once on a page
RATE_PER_IP = 120  # requests a minute from one address (offices share one)
RATE_PER_BROWSER = 30  # requests a minute for one anonymous id
ACTIONS = ("dismissed", "clicked")
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
    "Cache-Control": "no-store",
}


class TooManyRequests(EkidenError):
    status = 429
    code = "rate_limited"


class RateLimit:
    """Fixed one-minute windows of request counts per key, in this process. The counts of
    a past window are dropped whole, so memory holds one minute's keys at most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, key: str, limit: int) -> bool:
        """Count a request; False when ``key`` is over ``limit`` in this minute."""
        window = int(time.monotonic() // 60)
        with self._lock:
            if window != self._window:
                self._window, self._counts = window, {}
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
        return count <= limit


_limits: weakref.WeakKeyDictionary[Engine, RateLimit] = weakref.WeakKeyDictionary()
_limits_guard = threading.Lock()


def _limit_for(engine: Engine) -> RateLimit:
    with _limits_guard:
        found = _limits.get(engine)
        if found is None:
            found = _limits[engine] = RateLimit()
        return found


def _read(data: Any) -> tuple[str, str]:
    """(key, anonymous id) from the body; errors name the part that is wrong."""
    if not isinstance(data, dict):
        raise Malformed('the body must be a JSON object: {"writeKey": …, "anonymousId": …}')
    key = data.get("writeKey")
    if not isinstance(key, str) or not key or len(key) > 100:
        raise Unauthorized("writeKey: the site's ingest key is required")
    anonymous_id = data.get("anonymousId")
    if not isinstance(anonymous_id, str) or not ANONYMOUS_ID.fullmatch(anonymous_id):
        raise Invalid(
            "anonymousId: the browser's id (8 to 64 letters, digits, '-', '_' or '.') is required",
            code="invalid_anonymous_id",
        )
    return key, anonymous_id


def _check_key(conn: Connection, key: str) -> None:
    found = find_key(conn, key)
    if found is None:
        raise Unauthorized("writeKey: the key is unknown or revoked")
    if found.scope != "ingest":
        raise Forbidden(
            "writeKey: only an ingest key may be used in web pages (an admin key there is "
            "readable by anyone: revoke it)"
        )


def _contact_of(conn: Connection, anonymous_id: str) -> int | None:
    """The live contact this browser belongs to, or None."""
    contact_id = contacts_for_anonymous_ids(conn, [anonymous_id]).get(anonymous_id)
    if contact_id is None:
        return None
    merged = conn.execute(
        select(contacts.c.merged_into_id).where(contacts.c.id == contact_id)
    ).first()
    if merged is None or merged.merged_into_id is not None:
        return None
    return contact_id


def _event(
    kind: str,
    row: Any,
    contact_id: int,
    anonymous_id: str,
    now: datetime,
    request: Request,
    message_id: str,
) -> NewEvent:
    return NewEvent(
        type=f"onsite_{kind}",
        occurred_at=now,
        source="browser",
        contact_id=contact_id,
        anonymous_id=anonymous_id,
        properties={"message_id": row.id, "journey": row.journey_key, "title": row.title},
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        message_id=message_id,
    )


def _pending(conn: Connection, contact_id: int, now: datetime) -> list[Any]:
    m = onsite_messages
    return list(
        conn.execute(
            select(m, journeys.c.key.label("journey_key"))
            .join(journeys, journeys.c.id == m.c.journey_id)
            .where(
                m.c.contact_id == contact_id,
                m.c.dismissed_at.is_(None),
                m.c.clicked_at.is_(None),
                or_(m.c.expires_at.is_(None), m.c.expires_at > now),
                or_(m.c.shown_at.is_(None), m.c.show == "until_dismissed"),
            )
            .order_by(m.c.id)
            .limit(MAX_MESSAGES)
        )
    )


def messages_for_browser(
    ctx: AppContext, key: str, anonymous_id: str, request: Request
) -> list[dict[str, Any]]:
    """Claim and return the messages to show now in this browser, recording each shown."""
    now = ctx.clock.now()
    with ctx.engine.begin() as conn:
        _check_key(conn, key)
        if machine_reason(request.headers.get("user-agent")) is not None:
            return []  # a crawler or scanner does not use up a person's message
        contact_id = _contact_of(conn, anonymous_id)
        if contact_id is None:
            return []
        shown: list[dict[str, Any]] = []
        happened: list[NewEvent] = []
        m = onsite_messages
        for row in _pending(conn, contact_id, now):
            claimed = conn.execute(
                update(m)
                .where(m.c.id == row.id, or_(m.c.shown_at.is_(None), m.c.show != "once"))
                .values(shown_at=row.shown_at or now, shown_count=m.c.shown_count + 1)
                .returning(m.c.shown_count)
            ).scalar_one_or_none()
            if claimed is None:
                continue  # another page of this visitor took a once-only message
            happened.append(
                _event("shown", row, contact_id, anonymous_id, now, request,
                       f"onsite:{row.id}:shown:{claimed}")
            )  # fmt: skip
            shown.append(
                {
                    "id": row.id,
                    "title": row.title,
                    "message": row.message,
                    "link": row.link,
                    "linkText": row.link_text,
                }
            )
        record_events(conn, ctx.clock, happened)
    return shown


def record_action(
    ctx: AppContext, key: str, anonymous_id: str, message_id: int, action: str, request: Request
) -> bool:
    """Record that the visitor closed the message or followed its link; False when it had
    been recorded already. NotFound unless the message is this browser's and was shown."""
    now = ctx.clock.now()
    m = onsite_messages
    column = m.c.dismissed_at if action == "dismissed" else m.c.clicked_at
    with ctx.engine.begin() as conn:
        _check_key(conn, key)
        contact_id = _contact_of(conn, anonymous_id)
        row = conn.execute(
            select(onsite_messages, journeys.c.key.label("journey_key"))
            .join(journeys, journeys.c.id == onsite_messages.c.journey_id)
            .where(onsite_messages.c.id == message_id)
        ).first()
        if (
            contact_id is None
            or row is None
            or row.contact_id != contact_id
            or row.shown_at is None
        ):
            # the same answer whatever the reason: nothing about other people's messages
            raise NotFound(f"no message {message_id} shown in this browser")
        done = conn.execute(
            update(onsite_messages)
            .where(onsite_messages.c.id == message_id, column.is_(None))
            .values({column.name: now})
        ).rowcount
        if done:
            record_events(
                conn,
                ctx.clock,
                [_event(action, row, contact_id, anonymous_id, now, request,
                        f"onsite:{message_id}:{action}")],
            )  # fmt: skip
    return bool(done)


async def _body(request: Request) -> Any:
    data = await read_capped_body(request, limit=MAX_BODY, kind="onsite")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"the request body is not valid JSON: {exc}") from None


def _limited(ctx: AppContext, request: Request, anonymous_id: str) -> None:
    limit = _limit_for(ctx.engine)
    address = request.client.host if request.client else "-"
    if not limit.hit(f"ip:{address}", RATE_PER_IP) or not limit.hit(
        f"aid:{anonymous_id}", RATE_PER_BROWSER
    ):
        raise TooManyRequests("too many requests from this browser; try again in a minute")


def _answer(payload: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, media_type="application/json",
        headers=CORS_HEADERS,
    )  # fmt: skip


def _error(exc: EkidenError) -> Response:
    response = error_response(exc.status, exc.code, exc.message, exc.details)
    response.headers.update(CORS_HEADERS)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = "60"
    return response


@router.post("/t/onsite")
async def onsite_messages_for_browser(request: Request) -> Response:
    """The on-site messages to show now in this browser (its contact's), marked as shown.
    Body: ``{"writeKey": INGEST_KEY, "anonymousId": AID}``. An unknown browser gets an empty
    list, exactly as a known one without messages."""
    ctx = get_ctx(request)
    try:
        key, anonymous_id = _read(await _body(request))
        _limited(ctx, request, anonymous_id)
        found = await run_in_threadpool(messages_for_browser, ctx, key, anonymous_id, request)
    except EkidenError as exc:
        return _error(exc)
    locale = pick_locale(request.headers.get("accept-language"), ctx.settings.default_locale)
    labels = {"close": gettext(locale, "Close"), "region": gettext(locale, "Message")}
    return _answer({"messages": found, "labels": labels})


@router.post("/t/onsite/{message_id}")
async def onsite_message_action(message_id: int, request: Request) -> Response:
    """The visitor closed a message (``"action": "dismissed"``) or followed its link
    (``"clicked"``). Recorded once, as an ``onsite_dismissed`` / ``onsite_clicked`` event."""
    ctx = get_ctx(request)
    try:
        data = await _body(request)
        key, anonymous_id = _read(data)
        action = data.get("action")
        if action not in ACTIONS:
            raise Invalid(f"action: one of {', '.join(ACTIONS)}, not {action!r}")
        _limited(ctx, request, anonymous_id)
        recorded = await run_in_threadpool(
            record_action, ctx, key, anonymous_id, message_id, str(action), request
        )
    except EkidenError as exc:
        return _error(exc)
    return _answer({"success": True, "recorded": recorded})


ONSITE_JS = Path(__file__).parents[1] / "tracking" / "static" / "onsite.js"


@cache
def _script() -> bytes:
    return ONSITE_JS.read_bytes()


@router.get("/t/onsite.js", include_in_schema=False)
def onsite_script() -> Response:
    """The code that shows messages; t.js loads it only when there are messages to show."""
    return Response(
        _script(),
        media_type="application/javascript; charset=utf-8",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


async def _preflight(request: Request) -> Response:
    return Response(status_code=204, headers=CORS_HEADERS)


router.add_api_route("/t/onsite", _preflight, methods=["OPTIONS"], include_in_schema=False)
router.add_api_route(
    "/t/onsite/{message_id}", _preflight, methods=["OPTIONS"], include_in_schema=False
)
