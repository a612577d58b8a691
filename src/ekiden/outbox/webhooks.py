"""Outbox kind "webhook": POST a JSON body to a URL, optionally signed.

Payload: ``{"url": str, "body": <JSON>, "sign": bool, "secret": str | None}``. With ``sign``
the request is signed when a secret is known: the payload's ``secret`` (a ``whsec_`` secret for
this target), else the ``webhook_secret`` setting; without either it goes unsigned.
Slack-compatible incoming webhooks are plain webhooks with body ``{"text": ...}``.

Outcome: 2xx sent; 408, 429, 5xx, timeouts and connection errors retry with backoff; other
4xx and 3xx are permanent (a redirect is not followed: the target must be configured right).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from ekiden.outbox.context import DeliveryContext
from ekiden.outbox.handlers import AfterSent, register_handler
from ekiden.outbox.models import DeliveryError, OutboxEntry
from ekiden.outbox.signing import signature_headers

RETRYABLE_4XX = frozenset({408, 425, 429})


def deliver_webhook(context: DeliveryContext, entry: OutboxEntry) -> AfterSent | None:
    url, body, sign, secret = _parse(entry.payload, context.settings.webhook_secret)
    data = orjson.dumps(body).decode()
    headers = {"content-type": "application/json"}
    if sign and secret:
        # The timestamp is when the request leaves (receivers reject stale ones), so it is
        # wall time rather than the scheduling clock.
        sent_at = datetime.now(UTC)
        headers |= signature_headers(secret, msg_id=entry.key, sent_at=sent_at, body=data)
    try:
        response = context.http.post(url, content=data.encode(), headers=headers)
    except httpx.TimeoutException:
        raise DeliveryError(f"timed out calling {_host(url)}", permanent=False) from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"could not call {_host(url)}: {exc}", permanent=False) from None
    status = response.status_code
    if 200 <= status < 300:
        return None
    reason = f"{_host(url)} answered HTTP {status}: {response.text[:200]}"
    permanent = status < 500 and status not in RETRYABLE_4XX
    raise DeliveryError(reason, permanent=permanent)


def _parse(payload: dict[str, Any], default_secret: str) -> tuple[str, Any, bool, str]:
    url = payload.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryError(f"webhook url must be an http(s) URL, got {url!r}", permanent=True)
    if "body" not in payload:
        raise DeliveryError("webhook payload has no body", permanent=True)
    secret = payload.get("secret") or default_secret
    return url, payload["body"], bool(payload.get("sign", False)), str(secret or "")


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


register_handler("webhook", deliver_webhook)
