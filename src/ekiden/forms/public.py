"""Public form endpoints: GET /f/{slug} (hosted page), GET /f/{slug}.js (embed),
POST /f/{slug} (submit; HTML for browsers, JSON for the embed and API callers)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy import Connection

from ekiden.config import SUPPORTED_LOCALES
from ekiden.errors import EkidenError, NotFound
from ekiden.forms import render
from ekiden.forms.definition import UTM_FIELDS
from ekiden.forms.posted import Posted, read_posted
from ekiden.forms.service import SubmissionRejected, SubmissionResult, submit_form
from ekiden.forms.store import StoredForm, get_form
from ekiden.forms.tokens import issue_token, read_token
from ekiden.i18n import gettext, pick_locale
from ekiden.web.deps import AppContext, Conn, Ctx
from ekiden.web.errors import error_response

router = APIRouter(tags=["forms (public)"], include_in_schema=False)

ANONYMOUS_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,200}$")
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Accept",
    "Access-Control-Max-Age": "86400",
}


def _security_headers(nonce: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": f"default-src 'none'; style-src 'nonce-{nonce}'; "
        f"script-src 'nonce-{nonce}'; img-src 'self'; base-uri 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Cache-Control": "no-store",
    }


def _html(page: tuple[str, str], status: int = 200) -> HTMLResponse:
    html, nonce = page
    return HTMLResponse(html, status_code=status, headers=_security_headers(nonce))


def _locale(request: Request, ctx: AppContext, explicit: str | None = None) -> str:
    asked = explicit or request.query_params.get("lang")
    if asked in SUPPORTED_LOCALES:
        return str(asked)
    return pick_locale(request.headers.get("accept-language"), ctx.settings.default_locale)


def _live_form(conn: Connection, slug: str) -> StoredForm | None:
    try:
        return get_form(conn, slug, include_archived=False)
    except NotFound:
        return None


def _not_found_page(locale: str) -> HTMLResponse:
    page = render.error_page(
        locale,
        heading_text=gettext(locale, "Form not found"),
        message=gettext(locale, "This form does not exist or is no longer available."),
    )
    return _html(page, 404)


def _action(ctx: AppContext, slug: str) -> str:
    return f"{ctx.settings.base_url.rstrip('/')}/f/{slug}"


def _anonymous_id(value: str | None) -> str | None:
    return value if value and ANONYMOUS_ID.match(value) else None


@router.get("/f/{slug}.js")
def embed_script(slug: str, request: Request, conn: Conn, ctx: Ctx) -> Response:
    """The embed: renders the form into <div data-ekiden-form="slug"> on any website."""
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    form = _live_form(conn, slug)
    if form is None:
        body = "/* Ekiden: this form does not exist or is no longer available */\n"
        return Response(body, 404, headers, media_type="application/javascript")
    sid = issue_token(ctx.settings.secret_key, slug, ctx.clock.now())
    script = render.embed_script(
        form.definition, _locale(request, ctx), action=_action(ctx, slug), sid=sid
    )
    return Response(script, headers=headers, media_type="application/javascript")


@router.get("/f/{slug}")
def hosted_page(slug: str, request: Request, conn: Conn, ctx: Ctx) -> HTMLResponse:
    """The hosted form page; Japanese by default, English via Accept-Language or ?lang=en."""
    locale = _locale(request, ctx)
    form = _live_form(conn, slug)
    if form is None:
        return _not_found_page(locale)
    query = request.url.query
    hidden = {
        "_sid": issue_token(ctx.settings.secret_key, slug, ctx.clock.now()),
        "_lang": locale,
        "_aid": _anonymous_id(request.cookies.get("ekiden_aid")) or "",
        "_page": (_action(ctx, slug) + (f"?{query}" if query else ""))[:2000],
        "_ref": request.headers.get("referer", "")[:2000],
    }
    hidden.update({k: v[:500] for k in UTM_FIELDS if (v := request.query_params.get(k))})
    return _html(
        render.form_page(form.definition, locale, action=_action(ctx, slug), hidden=hidden)
    )


@router.options("/f/{slug}")
def submit_preflight(slug: str) -> Response:
    """CORS preflight for embeds that post JSON from the customer's website."""
    return Response(status_code=204, headers=CORS)


@router.post("/f/{slug}")
def submit(
    slug: str,
    request: Request,
    posted: Annotated[Posted, Depends(read_posted)],
    conn: Conn,
    ctx: Ctx,
) -> Response:
    """Submit the form: 303 redirect or thank-you page (JSON ``{"ok": true, ...}`` for
    fetch callers); 422 with every problem; 404 for an unknown or archived form."""
    locale = _locale(request, ctx, posted.first("_lang"))
    if posted.error is not None:
        return _failure(posted, locale, posted.error)
    form = _live_form(conn, slug)
    if form is None:
        if posted.wants_json:
            return _failure(posted, locale, NotFound(f"no form with slug {slug!r}"))
        return _with_cors(_not_found_page(locale))
    token = read_token(ctx.settings.secret_key, slug, posted.first("_sid"))
    try:
        result = submit_form(
            conn,
            ctx.clock,
            form,
            posted.values,
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
            anonymous_id=_anonymous_id(posted.first("_aid") or request.cookies.get("ekiden_aid")),
            page_url=(posted.first("_page") or request.headers.get("referer") or "")[:2000] or None,
            referrer=(posted.first("_ref") or "")[:2000] or None,
            locale=locale,
            submission_id=token[0] if token else None,
            rendered_at=token[1] if token else None,
        )
    except SubmissionRejected as exc:
        if posted.wants_json:
            return _failure(posted, locale, exc)
        errors = {key: problem.text(locale) for key, problem in exc.problems.items()}
        hidden = {k: posted.first(k) or "" for k in ("_sid", "_lang", "_aid", "_page", "_ref")}
        hidden.update({k: v for k in UTM_FIELDS if (v := posted.first(k))})
        page = render.form_page(
            form.definition,
            locale,
            action=_action(ctx, slug),
            hidden=hidden,
            values=posted.values,
            errors=errors,
        )
        return _with_cors(_html(page, 422))
    return _success(form, locale, result, wants_json=posted.wants_json)


def _success(
    form: StoredForm, locale: str, result: SubmissionResult, *, wants_json: bool
) -> Response:
    if wants_json:
        body = {
            "ok": True,
            "message": result.message,
            "redirect": result.redirect_url,
            "document_url": result.document_url,
        }
        return JSONResponse(body, headers=CORS)
    if result.redirect_url:
        # Only ever the URL configured on the form: never one taken from the request.
        return RedirectResponse(result.redirect_url, status_code=303, headers=CORS)
    page = render.thanks_page(
        form.definition, locale, message=result.message, document_url=result.document_url
    )
    return _with_cors(_html(page))


def _failure(posted: Posted, locale: str, exc: EkidenError) -> Response:
    if posted.wants_json:
        response: Response = error_response(exc.status, exc.code, exc.message, exc.details)
    else:
        page = render.error_page(
            locale,
            heading_text=gettext(locale, "The form could not be sent"),
            message=gettext(locale, exc.message),
        )
        response = _html(page, exc.status)
    return _with_cors(response)


def _with_cors(response: Response) -> Response:
    response.headers.update(CORS)
    return response
