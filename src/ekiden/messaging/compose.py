"""Composing one ready-to-send email for one contact.

``compose(conn, clock, settings, *, template, contact_id, message_id, send_key, ...)``
returns an ``email.message.EmailMessage`` (CRLF line ends; see mime.py) with

- From (name and address: the template's, else ``EKIDEN_EMAIL_SENDER_NAME`` /
  ``EKIDEN_EMAIL_SENDER_ADDRESS``), To (the contact's name and address), Subject and Date;
  non-ASCII headers are RFC 2047 encoded;
- a stable ``Message-ID`` ``<ekiden.{message_id}@{host of EKIDEN_BASE_URL}>``: composing the
  same message again (a retry) gives the same id;
- a text and an HTML part, both UTF-8 (base64, which no relay rewrites, so DKIM holds);
- in the HTML: CSS inlined, the preheader as hidden text, tracked links (``/t/c/{token}``,
  UTM parameters on links into ``EKIDEN_EMAIL_SITE_DOMAINS``), a hidden honeypot link and the
  open pixel (``/t/o/{token}``); the text part's links are tracked too;
- a footer with the sender's name, address and postal address (特定電子メール法) and, for
  marketing mail, the unsubscribe and preference links plus ``List-Unsubscribe`` (https and,
  when configured, mailto) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
  (RFC 8058).

``message_id`` identifies this message to this contact (events carry it as ``send_id``);
``send_key`` names the send (campaign) and becomes ``utm_campaign``. ``template`` is a template
key (its current version, or ``version``) or a pinned ``TemplateVersion``; ``overrides`` may
replace subject, preheader, html or text (an A/B variant named ``ab_variant``). Consent is not
checked here: the sender calls ``compliance.may_send`` first.

Raises NotFound for an unknown template or contact, Invalid when the contact has no address
or the sender's identity is not configured, TemplateProblem when the template fails to render.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy import Connection

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.service import contact_not_found
from ekiden.errors import Invalid
from ekiden.messaging.compliance import check_category
from ekiden.messaging.context import Extras, load_contexts, with_extras
from ekiden.messaging.decorate import Footer, LinkTracker, add_machine_traps, add_preheader
from ekiden.messaging.htmlparts import html_to_text, inline_css, insert_before_body_close
from ekiden.messaging.mime import address, build_message, header_text, wire_form
from ekiden.messaging.models import TemplateVersion
from ekiden.messaging.store import template_version
from ekiden.messaging.templates import names_used, render_part
from ekiden.messaging.tokens import EmailToken, seal


@dataclass
class Rendered:
    """A message's parts before they become MIME."""

    category: str
    subject: str
    preheader: str
    html: str
    text: str
    sender_name: str
    sender_address: str
    to_name: str
    to_address: str
    unsubscribe_url: str
    headers: dict[str, str] = field(default_factory=dict)


def message_id_header(settings: Settings, message_id: int) -> str:
    """The stable Message-ID of message ``message_id``."""
    return f"<ekiden.{message_id}@{_host(settings.base_url)}>"


@lru_cache(maxsize=8)
def _host(base_url: str) -> str:
    return urlsplit(base_url).hostname or "localhost"


def _sender(pinned: TemplateVersion, settings: Settings, kind: str) -> tuple[str, str]:
    """(name, address) of the sender; Invalid when the law's minimum is not configured."""
    name = pinned.sender_name or settings.email_sender_name
    address = pinned.sender_address or settings.email_sender_address
    if not address:
        raise Invalid(
            "no sender address: set EKIDEN_EMAIL_SENDER_ADDRESS or the template's sender_address",
            code="no_sender",
        )
    if kind == "marketing" and not (name and settings.email_postal_address):
        raise Invalid(
            "marketing email must name its sender and postal address (特定電子メール法): set "
            "EKIDEN_EMAIL_SENDER_NAME (or the template's sender_name) and "
            "EKIDEN_EMAIL_POSTAL_ADDRESS",
            code="no_sender",
        )
    return name, address


def _list_unsubscribe(settings: Settings, url: str, message_id: int) -> dict[str, str]:
    targets = [f"<{url}>"]
    if settings.email_unsubscribe_mailto:
        subject = quote(f"unsubscribe {message_id}")
        targets.append(f"<mailto:{settings.email_unsubscribe_mailto}?subject={subject}>")
    return {
        "List-Unsubscribe": ",\r\n ".join(targets),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def template_sources(
    pinned: TemplateVersion, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The four parts' template sources of a version, with an A/B variant's overrides."""
    return {
        "subject": pinned.subject,
        "preheader": pinned.preheader,
        "html": pinned.html,
        "text": pinned.text or "",
        **(overrides or {}),
    }


def names_read(source: Mapping[str, str]) -> frozenset[str]:
    """What the parts read (``templates.names_used``): the data to load for them."""
    return names_used(tuple(source[part] for part in ("subject", "preheader", "html", "text")))


def render_message(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    *,
    template: str | TemplateVersion,
    contact_id: int,
    message_id: int,
    send_key: str,
    category: str | None = None,
    version: int | None = None,
    ab_variant: str | None = None,
    overrides: Mapping[str, str] | None = None,
    tracking: bool = True,
    to: str | None = None,
) -> Rendered:
    """The parts of the message ``compose`` builds (``tracking=False``, for previews: links,
    pixel and honeypot left out, unsubscribe links inert). ``to`` replaces the contact's
    address (a test send)."""
    pinned = template if isinstance(template, TemplateVersion) else None
    pinned = pinned or template_version(conn, str(template), version)
    _sender(pinned, settings, check_category(category or pinned.category))
    used = names_read(template_sources(pinned, overrides))
    data = load_contexts(conn, [contact_id], used).get(contact_id)
    if data is None:
        raise contact_not_found(conn, contact_id)
    return render_with(
        clock,
        settings,
        pinned,
        data,
        contact_id=contact_id,
        message_id=message_id,
        send_key=send_key,
        category=category,
        ab_variant=ab_variant,
        overrides=overrides,
        tracking=tracking,
        to=to,
    )


def render_with(
    clock: Clock,
    settings: Settings,
    pinned: TemplateVersion,
    data: dict[str, Any],
    *,
    contact_id: int,
    message_id: int,
    send_key: str,
    category: str | None = None,
    ab_variant: str | None = None,
    overrides: Mapping[str, str] | None = None,
    tracking: bool = True,
    to: str | None = None,
) -> Rendered:
    """``render_message`` with the template version and the contact's data already loaded
    (``context.load_contexts``, for at least the names the parts read): no database work,
    so a sender can load a whole group of recipients in a few queries first."""
    kind = check_category(category or pinned.category)
    sender_name, sender_address = _sender(pinned, settings, kind)
    base = EmailToken(
        kind="u",
        message_id=message_id,
        contact_id=contact_id,
        email=pinned.key,
        send=send_key,
        issued_at=clock.now(),
        variant=ab_variant,
    )
    # a preview's links must not work: whoever looks at it is not the recipient
    token = seal(settings.signing_key, base) if tracking else "preview"
    unsubscribe_url = f"{settings.base_url}/u/{token}"
    preferences_url = unsubscribe_url + "/preferences"
    extras = Extras(
        sender_name=sender_name,
        sender_address=sender_address,
        postal_address=settings.email_postal_address,
        email_key=pinned.key,
        send_key=send_key,
        variant=ab_variant,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
    )
    source = template_sources(pinned, overrides)
    context = with_extras(data, extras)
    to_address = to or context["contact"]["email"]
    if not to_address:
        raise Invalid(f"contact {contact_id} has no email address", code="no_email")

    subject = " ".join(render_part("subject", source["subject"], context).split())
    preheader = " ".join(render_part("preheader", source["preheader"], context).split())
    body_html = render_part("html", source["html"], context)
    if source["text"]:
        body_text = render_part("text", source["text"], context)
    else:
        body_text = html_to_text(body_html)
    document = inline_css(body_html)
    if tracking:
        tracker = LinkTracker(settings, base, send_key or pinned.key)
        document, body_text = tracker.track(document, body_text)
    marketing = kind == "marketing"
    footer_html, footer_text = Footer(
        sender_name=sender_name,
        sender_address=sender_address,
        postal_address=settings.email_postal_address,
        unsubscribe_url=unsubscribe_url if marketing else None,
        preferences_url=preferences_url if marketing else None,
    ).parts(settings.default_locale)
    document = insert_before_body_close(document, footer_html)
    if tracking:
        document = add_machine_traps(document, settings, base)
    document = add_preheader(document, preheader)
    return Rendered(
        category=kind,
        subject=subject,
        preheader=preheader,
        html=document,
        text=body_text.rstrip("\n") + "\n" + footer_text,
        sender_name=sender_name,
        sender_address=sender_address,
        to_name=context["contact"]["full_name"],
        to_address=to_address,
        unsubscribe_url=unsubscribe_url,
        headers=_list_unsubscribe(settings, unsubscribe_url, message_id) if marketing else {},
    )


def to_mime(settings: Settings, clock: Clock, rendered: Rendered, message_id: int) -> EmailMessage:
    """The MIME message of rendered parts."""
    return build_message(
        _headers(settings, clock, rendered, message_id), rendered.text, rendered.html
    )


def _headers(
    settings: Settings, clock: Clock, rendered: Rendered, message_id: int
) -> list[tuple[str, str]]:
    headers = [
        ("From", address(rendered.sender_name, rendered.sender_address)),
        ("To", address(rendered.to_name, rendered.to_address)),
        ("Subject", header_text(rendered.subject)),
        ("Date", format_datetime(clock.now())),
        ("Message-ID", message_id_header(settings, message_id)),
    ]
    headers += list(rendered.headers.items())
    return headers


def to_wire(settings: Settings, clock: Clock, rendered: Rendered, message_id: int) -> bytes:
    """The message of rendered parts as it goes on the wire (CRLF line ends): the same
    bytes as ``to_mime(...).as_bytes()``, without building the ``EmailMessage``."""
    return wire_form(_headers(settings, clock, rendered, message_id), rendered.text, rendered.html)


def compose(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    *,
    template: str | TemplateVersion,
    contact_id: int,
    message_id: int,
    send_key: str,
    category: str | None = None,
    version: int | None = None,
    ab_variant: str | None = None,
    overrides: Mapping[str, str] | None = None,
    to: str | None = None,
) -> EmailMessage:
    """One ready email for one contact; see the module docstring for what it holds."""
    rendered = render_message(
        conn,
        clock,
        settings,
        template=template,
        contact_id=contact_id,
        message_id=message_id,
        send_key=send_key,
        category=category,
        version=version,
        ab_variant=ab_variant,
        overrides=overrides,
        to=to,
    )
    return to_mime(settings, clock, rendered, message_id)
