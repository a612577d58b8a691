"""Turning a form into HTML (the hosted page) and JavaScript (the embed).

Templates are autoescaped: every label, value and message from a definition or a visitor is
escaped. The embed gets its configuration as JSON with ``<`` escaped, and builds its DOM with
``textContent`` only.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from ekiden.forms.definition import UTM_FIELDS, FormDefinition, LocalText
from ekiden.i18n import gettext


@cache
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("ekiden.forms", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _helpers(locale: str) -> dict[str, Callable[..., str]]:
    def t(message: str, **params: object) -> str:
        return gettext(locale, message, **params)

    def text(value: LocalText) -> str:
        return value.get(locale)

    return {"t": t, "text": text}


def heading(form: FormDefinition, locale: str) -> str:
    return form.title.get(locale) if form.title else form.name


def _page(template: str, locale: str, **context: Any) -> tuple[str, str]:
    """(HTML, CSP nonce): the nonce admits only our own inline style and script."""
    nonce = secrets.token_urlsafe(16)
    html = (
        _env()
        .get_template(template)
        .render(locale=locale, nonce=nonce, **_helpers(locale), **context)
    )
    return html, nonce


def form_page(
    form: FormDefinition,
    locale: str,
    *,
    action: str,
    hidden: Mapping[str, str],
    values: Mapping[str, Sequence[str]] | None = None,
    errors: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """The hosted form, optionally re-shown with the visitor's values and the errors."""
    values = values or {}
    return _page(
        "form.html",
        locale,
        form=form,
        heading=heading(form, locale),
        action=action,
        hidden=hidden,
        values=values,
        errors=errors or {},
        consent_checked=bool([v for v in values.get("consent", ()) if v]),
    )


def thanks_page(
    form: FormDefinition, locale: str, *, message: str, document_url: str | None
) -> tuple[str, str]:
    return _page(
        "thanks.html",
        locale,
        heading=heading(form, locale),
        message=message,
        document_url=document_url,
    )


def error_page(locale: str, *, heading_text: str, message: str) -> tuple[str, str]:
    return _page("error.html", locale, heading=heading_text, message=message)


def embed_script(form: FormDefinition, locale: str, *, action: str, sid: str) -> str:
    """The embed script with this form's configuration built in."""
    config = {
        "slug": form.slug,
        "action": action,
        "locale": locale,
        "sid": sid,
        "description": form.description.get(locale) if form.description else None,
        "utm": list(UTM_FIELDS),
        "honeypot": form.honeypot,
        "consent": (
            {"required": form.consent.required, "text": form.consent.text.get(locale)}
            if form.consent
            else None
        ),
        "fields": [
            {
                "key": f.key,
                "type": f.type,
                "label": f.label.get(locale),
                "required": f.required,
                "options": [{"value": o.value, "label": o.label.get(locale)} for o in f.options],
                "max": f.limit() if f.type not in ("select", "radio", "checkbox") else None,
                "placeholder": f.placeholder.get(locale) if f.placeholder else None,
                "help": f.help.get(locale) if f.help else None,
                "default": f.default,
            }
            for f in form.fields
        ],
        "texts": {
            "required": gettext(locale, "Required"),
            "choose": gettext(locale, "Please choose"),
            "submit": form.submit_label.get(locale)
            if form.submit_label
            else gettext(locale, "Submit"),
            "sending": gettext(locale, "Sending…"),
            "failed": gettext(locale, "The form could not be sent. Please try again."),
            "download": gettext(locale, "Download the document"),
        },
    }
    # ensure_ascii escapes U+2028/2029; "<" is escaped so no "</script>" can ever appear.
    literal = json.dumps(config, ensure_ascii=True).replace("<", "\\u003c")
    return _embed_source().replace("__EKIDEN_FORM__", literal)


@cache
def _embed_source() -> str:
    return files("ekiden.forms").joinpath("static/embed.js").read_text(encoding="utf-8")
