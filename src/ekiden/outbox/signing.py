"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Headers: ``webhook-id`` (the outbox key, stable across retries so receivers can dedupe),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (``v1,`` + base64 of
HMAC-SHA256 over ``id.timestamp.body`` with the secret's bytes).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_…`` secret; ValueError names what is wrong."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("must start with whsec_ followed by base64, e.g. whsec_MfKQ9r8GKYqrTw…")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :] + "==", validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not base64") from None
    if len(key) < 24:
        raise ValueError("the secret must hold at least 24 bytes (32 recommended)")
    return key


def signature_headers(secret: str, *, msg_id: str, sent_at: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (the exact bytes that are sent)."""
    decode_secret(secret)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=sent_at, data=body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signature,
    }
