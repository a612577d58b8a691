"""The per-render submission token ``_sid``: when the form was shown, and a nonce that makes
a double-click or a re-sent POST one submission.

The token is ``<unix seconds>.<nonce>.<signature>``, signed with the server secret over the
form slug, so it cannot be forged to dodge the minimum fill time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime


def _sign(secret: str, slug: str, issued: int, nonce: str) -> str:
    message = f"form:{slug}:{issued}:{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def issue_token(secret: str, slug: str, now: datetime) -> str:
    """A fresh token for one rendering of the form ``slug``."""
    issued = int(now.timestamp())
    nonce = secrets.token_urlsafe(12)
    return f"{issued}.{nonce}.{_sign(secret, slug, issued, nonce)}"


def read_token(secret: str, slug: str, token: str | None) -> tuple[str, datetime] | None:
    """(nonce, when the form was shown) of a token we issued for ``slug``; None otherwise."""
    if not token or len(token) > 200:
        return None
    issued_text, _, rest = token.partition(".")
    nonce, _, signature = rest.partition(".")
    if not issued_text.isdigit() or not nonce or not signature:
        return None
    issued = int(issued_text)
    if not hmac.compare_digest(signature, _sign(secret, slug, issued, nonce)):
        return None
    return nonce, datetime.fromtimestamp(issued, UTC)
