"""Public email endpoints: the open pixel ``GET /t/o/{token}``, tracked links
``GET /t/c/{token}`` and unsubscribing ``GET|POST /u/{token}`` plus the preference page
``GET|POST /u/{token}/preferences`` (subscription topics, or unsubscribe from all).

A token that does not verify gets a plain 404 page: no detail, no redirect. A click redirects
only to the URL sealed in its token. ``GET /u/{token}`` never unsubscribes by itself (security
gateways fetch every link in a message); ``POST`` does at once, whether it is the RFC 8058
one-click request (``List-Unsubscribe=One-Click``) or the page's button. The preference page's
POST needs the form token of a page it rendered (CSRF) and is refused when the browser says it
came from another site.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool

from ekiden.config import SUPPORTED_LOCALES
from ekiden.contacts.service import live_contact_id
from ekiden.contacts.tables import contacts
from ekiden.i18n import gettext, pick_locale
from ekiden.messaging import activity, topics
from ekiden.messaging.activity import Visit
from ekiden.messaging.tokens import EmailToken, check_form_token, form_token, unseal
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


@dataclass(frozen=True)
class _PageTopic:
    key: str
    name: str
    description: str
    subscribed: bool


def _topics(ctx: AppContext, token: EmailToken, locale: str) -> list[_PageTopic]:
    with ctx.engine.connect() as conn:
        contact_id = live_contact_id(conn, token.contact_id)
        return [] if contact_id is None else _topics_in(conn, contact_id, locale)


def _preferences(
    request: Request,
    ctx: AppContext,
    token: str,
    found: EmailToken,
    *,
    status: int = 200,
    notice: str | None = None,
) -> Response:
    """The preference page: every live topic with the contact's state, and the choice
    between receiving (the topics ticked) and unsubscribing from all."""
    subscription, email = _recipient(ctx, found)
    if subscription is None:
        return _not_found()
    locale = _locale(request, ctx)
    return _page(
        "preferences.html",
        locale,
        "Email preferences",
        status=status,
        sender=_sender(ctx),
        email=email,
        subscription=subscription,
        stay_text=_stay_text(locale, ctx),
        topics=_topics(ctx, found, locale),
        csrf=form_token(ctx.settings.signing_key, token, ctx.clock.now()),
        notice=notice,
    )


@router.get("/u/{token}/preferences", include_in_schema=False)
def preferences_page(token: str, request: Request, ctx: Ctx) -> Response:
    """The preference page; fetching it changes nothing."""
    found = unseal(ctx.settings.signing_key, token, kinds="u")
    if found is None:
        return _not_found()
    return _preferences(request, ctx, token, found)


def _cross_site(request: Request) -> bool:
    """A form post that a browser says came from another site (Fetch Metadata). The Origin
    header cannot tell: with ``Referrer-Policy: no-referrer`` browsers send ``Origin: null``."""
    return request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")


@router.post("/u/{token}/preferences", include_in_schema=False)
async def save_preferences(token: str, request: Request, ctx: Ctx) -> Response:
    """Save the preference page: a valid form token (CSRF) from this very page is required;
    unknown topics or choices change nothing."""
    found = unseal(ctx.settings.signing_key, token, kinds="u")
    if found is None:
        return _not_found()
    locale = _locale(request, ctx)
    if _cross_site(request):
        message = gettext(locale, "This form can only be sent from its own page.")
        return _page("message.html", locale, "Email preferences", status=403, message=message)
    form = await request.form()
    csrf = form.get("csrf")
    if not isinstance(csrf, str) or not check_form_token(
        ctx.settings.signing_key, token, csrf, ctx.clock.now()
    ):
        notice = gettext(locale, "This page has expired. Check your choices and save again.")
        return await run_in_threadpool(
            _preferences, request, ctx, token, found, status=400, notice=notice
        )
    choice = form.get("choice")
    if choice not in ("stay", "unsubscribe"):
        message = gettext(locale, "Choose one of the options.")
        return _page("message.html", locale, "Email preferences", status=400, message=message)
    shown = [v for v in form.getlist("shown") if isinstance(v, str)]
    ticked = {v for v in form.getlist("topic") if isinstance(v, str)}
    choices = {key: key in ticked for key in shown} | dict.fromkeys(ticked, True)
    visit = _visit(request)
    stay_text = _stay_text(locale, ctx)
    evidence = f"email-preferences:{found.email}:{found.send_id}"

    def store() -> list[_PageTopic] | str:
        with ctx.engine.begin() as conn:
            if choice == "unsubscribe":
                activity.unsubscribe_by_token(conn, ctx.clock, found, visit, method="preferences")
                return []
            contact_id = live_contact_id(conn, found.contact_id)
            if contact_id is None:
                return []
            page = {t.key: t for t in _topics_in(conn, contact_id, locale)}
            unknown = [k for k in choices if k not in page]
            if unknown:
                return unknown[0]
            activity.stay_subscribed(conn, ctx.clock, found, visit, text_shown=stay_text)
            properties: dict[str, Any] = {"send_id": found.send_id, "email": found.email}
            if found.send:
                properties["send"] = found.send
            topics.choose_topics(
                conn,
                ctx.clock,
                contact_id,
                choices,
                source="preferences",
                source_ref=evidence,
                texts_shown={k: _topic_text(page[k]) for k in choices},
                ip=visit.ip,
                user_agent=visit.user_agent,
                event_properties=properties,
            )
            return _topics_in(conn, contact_id, locale)

    saved = await run_in_threadpool(store)
    if isinstance(saved, str):
        message = gettext(locale, "Unknown topic: %(topic)s", topic=saved)
        return _page("message.html", locale, "Email preferences", status=400, message=message)
    if choice == "unsubscribe":
        message = gettext(
            locale,
            "You have been unsubscribed. You will receive no more marketing email from %(sender)s.",
            sender=_sender(ctx),
        )
    else:
        message = gettext(locale, "Your email preferences have been saved.")
    return _page("saved.html", locale, "Email preferences", message=message, topics=saved)


def _topics_in(conn: Connection, contact_id: int, locale: str) -> list[_PageTopic]:
    return [
        _PageTopic(
            key=s.topic,
            name=getattr(s.name, locale),
            description=getattr(s.description, locale),
            subscribed=s.subscribed,
        )
        for s in topics.contact_topics(conn, contact_id)
    ]


def _topic_text(topic: _PageTopic) -> str:
    """What the page showed for a topic: the consent evidence of a choice."""
    return f"{topic.name} — {topic.description}" if topic.description else topic.name
