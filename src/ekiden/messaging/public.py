"""Public email endpoints: the open pixel ``GET /t/o/{token}``, tracked links
``GET /t/c/{token}`` and unsubscribing ``GET|POST /u/{token}`` plus the preference page
``GET|POST /u/{token}/preferences``.

A token that does not verify gets a plain 404 page: no detail, no redirect. A click redirects
only to the URL sealed in its token. ``GET /u/{token}`` never unsubscribes by itself (security
gateways fetch every link in a message); ``POST`` does at once, whether it is the RFC 8058
one-click request (``List-Unsubscribe=One-Click``) or the page's button.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ekiden.config import SUPPORTED_LOCALES
from ekiden.contacts.service import live_contact_id
from ekiden.contacts.tables import contacts
from ekiden.i18n import gettext, pick_locale
from ekiden.messaging import activity
from ekiden.messaging.activity import Visit
from ekiden.messaging.tokens import EmailToken, unseal
from ekiden.tracking.browser import PIXEL, PIXEL_COOKIE, PIXEL_HEADERS
from ekiden.tracking.pixel import new_anonymous_id
from ekiden.web.deps import AppContext, Ctx

router = APIRouter(tags=["email links"])

SITE_COOKIE = "ekiden_aid"  # the snippet's first-party cookie, present when served same-site
NO_TRACE = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Robots-Tag": "noindex",
}


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404, headers=NO_TRACE)


def _visit(request: Request, anonymous_id: str | None = None) -> Visit:
    return Visit(
        ip=request.client.host if request.client else None,
        user_agent=(request.headers.get("user-agent") or "")[:1000] or None,
        anonymous_id=anonymous_id,
    )


@router.get("/t/o/{token:path}", include_in_schema=False)
def email_open(token: str, request: Request, ctx: Ctx) -> Response:
    """The open pixel: a 1x1 GIF and an ``email_opened`` event."""
    found = unseal(ctx.settings.signing_key, token, kinds="o")
    if found is None:
        return _not_found()
    with ctx.engine.begin() as conn:
        activity.record_open(conn, ctx.clock, found, _visit(request))
    return Response(PIXEL, media_type="image/gif", headers={**PIXEL_HEADERS, **NO_TRACE})


@router.api_route("/t/c/{token:path}", methods=["GET", "HEAD"], include_in_schema=False)
def email_click(token: str, request: Request, ctx: Ctx) -> Response:
    """A tracked link: an ``email_clicked`` event, then a redirect to the sealed URL."""
    found = unseal(ctx.settings.signing_key, token, kinds="ch")
    if found is None:
        return _not_found()
    if found.kind == "c" and not found.url.lower().startswith(("http://", "https://")):
        return _not_found()
    if request.method == "HEAD":  # link checkers; a browser following a link sends GET
        if found.kind == "h":
            return PlainTextResponse("", headers=NO_TRACE)
        return RedirectResponse(found.url, status_code=302, headers=NO_TRACE)
    cookie = request.cookies.get(PIXEL_COOKIE) or request.cookies.get(SITE_COOKIE)
    browser = cookie or new_anonymous_id()
    with ctx.engine.begin() as conn:
        human = activity.record_click(
            conn, ctx.clock, ctx.settings, found, _visit(request, browser)
        )
    if found.kind == "h":
        return PlainTextResponse("", headers=NO_TRACE)
    response = RedirectResponse(found.url, status_code=302, headers=NO_TRACE)
    if human and not cookie:
        https = ctx.settings.base_url.startswith("https://")
        response.set_cookie(
            PIXEL_COOKIE,
            browser,
            max_age=ctx.settings.cookie_days * 86400,
            path="/t/",
            httponly=True,
            secure=https,
            samesite="none" if https else "lax",
        )
    return response


@cache
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("ekiden.messaging", "pages"),
        autoescape=True,
        undefined=StrictUndefined,
    )


def _locale(request: Request, ctx: AppContext) -> str:
    asked = request.query_params.get("lang")
    if asked in SUPPORTED_LOCALES:
        return str(asked)
    return pick_locale(request.headers.get("accept-language"), ctx.settings.default_locale)


def _page(template: str, locale: str, title: str, status: int = 200, **context: Any) -> Response:
    nonce = secrets.token_urlsafe(16)

    def t(message: str, **params: object) -> str:
        return gettext(locale, message, **params)

    html = (
        _env()
        .get_template(template)
        .render(locale=locale, nonce=nonce, t=t, title=t(title), **context)
    )
    headers = {
        **NO_TRACE,
        "Content-Security-Policy": f"default-src 'none'; style-src 'nonce-{nonce}'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    }
    return HTMLResponse(html, status_code=status, headers=headers)


def _masked(address: str | None) -> str:
    """h***@example.jp: enough for the recipient to recognise, little for anyone else."""
    if not address or "@" not in address:
        return ""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def _recipient(ctx: AppContext, token: EmailToken) -> tuple[str | None, str]:
    """(status, masked address) of the token's contact; status None when it is gone."""
    with ctx.engine.connect() as conn:
        contact_id = live_contact_id(conn, token.contact_id)
        if contact_id is None:
            return None, ""
        address = conn.execute(
            select(contacts.c.email).where(contacts.c.id == contact_id)
        ).scalar_one_or_none()
        return activity.subscription_status(conn, token), _masked(address)


def _sender(ctx: AppContext) -> str:
    return ctx.settings.email_sender_name or ctx.settings.base_url


@router.get("/u/{token}", include_in_schema=False)
def unsubscribe_page(token: str, request: Request, ctx: Ctx) -> Response:
    """A page with a confirm button; fetching it changes nothing."""
    found = unseal(ctx.settings.signing_key, token, kinds="u")
    if found is None:
        return _not_found()
    status, email = _recipient(ctx, found)
    if status is None:
        return _not_found()
    return _page(
        "confirm.html",
        _locale(request, ctx),
        "Unsubscribe",
        sender=_sender(ctx),
        email=email,
        preferences_url=f"{token}/preferences",  # relative: works behind a path prefix
    )


@router.post("/u/{token}", include_in_schema=False)
async def unsubscribe_now(token: str, request: Request, ctx: Ctx) -> Response:
    """Unsubscribe at once: the RFC 8058 one-click POST or the confirm page's button."""
    found = unseal(ctx.settings.signing_key, token, kinds="u")
    if found is None:
        return _not_found()
    form = await request.form()
    method = "one-click" if form.get("List-Unsubscribe") == "One-Click" else "page"
    visit = _visit(request)

    def store() -> bool:
        with ctx.engine.begin() as conn:
            return activity.unsubscribe_by_token(conn, ctx.clock, found, visit, method=method)

    await run_in_threadpool(store)
    locale = _locale(request, ctx)
    message = gettext(
        locale,
        "You have been unsubscribed. You will receive no more marketing email from %(sender)s.",
        sender=_sender(ctx),
    )
    return _page("message.html", locale, "Unsubscribed", message=message)


def _stay_text(locale: str, ctx: AppContext) -> str:
    return gettext(locale, "Keep receiving marketing email from %(sender)s", sender=_sender(ctx))


@router.get("/u/{token}/preferences", include_in_schema=False)
def preferences_page(token: str, request: Request, ctx: Ctx) -> Response:
    found = unseal(ctx.settings.signing_key, token, kinds="u")
    if found is None:
        return _not_found()
    status, email = _recipient(ctx, found)
    if status is None:
        return _not_found()
    locale = _locale(request, ctx)
    return _page(
        "preferences.html",
        locale,
        "Email preferences",
        sender=_sender(ctx),
        email=email,
        subscription=status,
        stay_text=_stay_text(locale, ctx),
    )


@router.post("/u/{token}/preferences", include_in_schema=False)
async def save_preferences(token: str, request: Request, ctx: Ctx) -> Response:
    found = unseal(ctx.settings.signing_key, token, kinds="u")
    if found is None:
        return _not_found()
    form = await request.form()
    choice = form.get("choice")
    locale = _locale(request, ctx)
    if choice not in ("stay", "unsubscribe"):
        message = gettext(locale, "Choose one of the options.")
        return _page("message.html", locale, "Email preferences", status=400, message=message)
    visit = _visit(request)
    stay_text = _stay_text(locale, ctx)

    def store() -> None:
        with ctx.engine.begin() as conn:
            if choice == "stay":
                activity.stay_subscribed(conn, ctx.clock, found, visit, text_shown=stay_text)
            else:
                activity.unsubscribe_by_token(conn, ctx.clock, found, visit, method="preferences")

    await run_in_threadpool(store)
    message = gettext(locale, "Your email preferences have been saved.")
    return _page("message.html", locale, "Email preferences", message=message)
