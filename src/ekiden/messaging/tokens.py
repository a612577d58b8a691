"""Signed tokens in email links: the open pixel, tracked links, the unsubscribe URL.

A token is ``<payload>.<signature>``, both base64url without padding: the payload is a small
JSON array, the signature the first 16 bytes of HMAC-SHA256 under a key derived from
``settings.secret_key``. Everything the endpoints need travels in the token (no lookup
before the signature is checked), and the click target is sealed inside it, so a click link
can never be turned into a redirect to another URL. A token that does not verify is simply
unknown: the endpoints answer a plain 404.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import orjson

MAX_TOKEN = 4096
_VERSION = 1


@dataclass(frozen=True)
class EmailToken:
    """What one link of one message stands for.

    ``kind`` is o (open pixel), c (tracked link), h (hidden honeypot link) or u (unsubscribe).
    ``message_id`` identifies the message to one contact (events carry it as ``send_id``),
    ``email`` is the template key, ``send`` the send (campaign) key, ``issued_at`` when the
    message was composed (about its delivery time), ``link`` the link's number in the message
    and ``links`` how many tracked links the message has; ``url`` is the sealed click target.
    """

    kind: str
    message_id: int
    contact_id: int
    email: str
    send: str
    issued_at: datetime
    variant: str | None = None
    link: int = 0
    links: int = 0
    url: str = ""

    @property
    def send_id(self) -> str:
        return str(self.message_id)


@lru_cache(maxsize=8)
def _key(secret: bytes) -> bytes:
    return hmac.new(secret, b"ekiden email links", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(secret: bytes, token: EmailToken) -> str:
    """The URL-safe text of ``token`` signed with ``secret``."""
    payload = orjson.dumps(
        [
            _VERSION,
            token.kind,
            token.message_id,
            token.contact_id,
            token.email,
            token.send,
            int(token.issued_at.timestamp()),
            token.variant,
            token.link,
            token.links,
            token.url,
        ]
    )
    body = _b64(payload)
    signature = hmac.new(_key(secret), body.encode(), hashlib.sha256).digest()[:16]
    return f"{body}.{_b64(signature)}"


def unseal(secret: bytes, text: str, *, kinds: str) -> EmailToken | None:
    """The token ``text`` stands for when its signature is ours and its kind is one of
    ``kinds``; None for anything else (tampered, truncated, foreign, another kind)."""
    if not text or len(text) > MAX_TOKEN or text.count(".") != 1:
        return None
    body, _, signature = text.partition(".")
    try:
        expected = hmac.new(_key(secret), body.encode(), hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(_unb64(signature), expected):
            return None
        fields = orjson.loads(_unb64(body))
    except (binascii.Error, ValueError, UnicodeError):
        return None
    try:
        version, kind, message_id, contact_id, email, send, issued, variant, link, links, url = (
            fields
        )
        if version != _VERSION or kind not in kinds:
            return None
        return EmailToken(
            kind=str(kind),
            message_id=int(message_id),
            contact_id=int(contact_id),
            email=str(email),
            send=str(send),
            issued_at=datetime.fromtimestamp(int(issued), UTC),
            variant=None if variant is None else str(variant),
            link=int(link),
            links=int(links),
            url=str(url),
        )
    except (TypeError, ValueError):
        return None


FORM_TOKEN_SECONDS = 24 * 3600  # how long a preference page may stay open before saving


def form_token(secret: bytes, page_token: str, now: datetime) -> str:
    """The anti-CSRF token of a form on the page of ``page_token``: issue time and a signature
    over both, so it is valid only for that page and only for ``FORM_TOKEN_SECONDS``."""
    issued = str(int(now.timestamp()))
    signature = hmac.new(
        _key(secret), f"form\0{page_token}\0{issued}".encode(), hashlib.sha256
    ).digest()[:16]
    return f"{issued}.{_b64(signature)}"


def check_form_token(secret: bytes, page_token: str, text: str, now: datetime) -> bool:
    """True when ``text`` is a form token of this page issued at most
    ``FORM_TOKEN_SECONDS`` ago (and not in the future)."""
    issued, _, signature = text.partition(".")
    if not issued.isdigit() or len(text) > 100:
        return False
    age = now.timestamp() - int(issued)
    if not -60 <= age <= FORM_TOKEN_SECONDS:
        return False
    expected = hmac.new(
        _key(secret), f"form\0{page_token}\0{issued}".encode(), hashlib.sha256
    ).digest()[:16]
    try:
        return hmac.compare_digest(_unb64(signature), expected)
    except (binascii.Error, ValueError):
        return False
