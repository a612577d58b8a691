"""VERP: a per-message envelope sender, so a bounce names the message it is about.

With ``bounce_address`` = ``bounces@mail.example.co.jp``, the outbox entry 4711 is sent with
``MAIL FROM:<bounces+4711-k3q9x2mfab@mail.example.co.jp>``. The tag is the entry id and a
truncated HMAC of it (signed with the secret key) in lower-case base32, so a forged bounce
cannot name another message and MTAs that lower-case local parts keep it intact. Route
``bounces+*@…`` (a "+" sub-address) to ``ekiden bounces ingest`` or ``POST /api/bounces``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from ekiden.config import Settings

_TAG = re.compile(r"\+(\d{1,18})-([a-z2-7]{10})@", re.IGNORECASE)


def _signature(settings: Settings, entry_id: int) -> str:
    mac = hmac.new(settings.signing_key, f"bounce:{entry_id}".encode(), hashlib.sha256)
    # base32 encodes 5-byte groups on their own: the first 10 characters come from the first
    # 10 bytes (encoding only those is the same text, and base32 is slow pure Python)
    return base64.b32encode(mac.digest()[:10]).decode()[:10].lower()


def bounce_address_for(settings: Settings, entry_id: int) -> str | None:
    """The envelope sender of outbox entry ``entry_id``, or None without ``bounce_address``."""
    if not settings.bounce_address or "@" not in settings.bounce_address:
        return None
    local, domain = settings.bounce_address.rsplit("@", 1)
    return f"{local}+{entry_id}-{_signature(settings, entry_id)}@{domain}"


def entry_id_from_address(settings: Settings, address: str) -> int | None:
    """The outbox entry a VERP address names, or None when it is not one of ours (or forged)."""
    match = _TAG.search(address)
    if match is None:
        return None
    entry_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2).lower(), _signature(settings, entry_id)):
        return None
    return entry_id
