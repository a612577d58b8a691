"""The "webhook" kind against a real local HTTP server: JSON bodies, Standard Webhooks
signatures verified with the reference library, and the retry rules per HTTP status."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import Engine
from standardwebhooks.webhooks import Webhook

from ekiden.clock import FrozenClock
from ekiden.config import ConfigError, Settings, load_settings
from ekiden.outbox import Status, deliver_due, enqueue, entry_by_key

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


class Receiver:
    """A local HTTP server that answers with the statuses it is told, in order (then 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                try:
                    self.send_response(status)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except BrokenPipeError:
                    pass  # the client gave up waiting (the timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def hook(engine: Engine, clock: FrozenClock, key: str, url: str, *, sign: bool = True) -> None:
    with engine.begin() as conn:
        enqueue(
            conn,
            clock,
            kind="webhook",
            key=key,
            payload={
                "url": url,
                "body": {"event": "sample_requested", "名前": "山田"},
                "sign": sign,
            },
        )


def status_of(engine: Engine, key: str) -> tuple[Status, int, str | None]:
    with engine.connect() as conn:
        entry = entry_by_key(conn, key)
    assert entry is not None
    return entry.status, entry.attempts, entry.last_error


def test_signed_webhook_arrives_and_verifies_with_the_reference_library(
    engine: Engine, clock: FrozenClock, settings: Settings, receiver: Receiver
) -> None:
    configured = settings.model_copy(update={"webhook_secret": SECRET})
    hook(engine, clock, "journey:1:node:4:contact:9", f"{receiver.url}/partner")
    assert deliver_due(engine, clock, configured) == 1
    [(path, headers, body)] = receiver.requests
    assert path == "/partner"
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "journey:1:node:4:contact:9"
    payload = Webhook(SECRET).verify(body, headers)
    assert payload == {"event": "sample_requested", "名前": "山田"}
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(SECRET).verify(body.replace("山田".encode(), "田中".encode()), headers)
    assert status_of(engine, "journey:1:node:4:contact:9")[0] is Status.SENT


def test_a_payload_secret_wins_over_the_setting(
    engine: Engine, clock: FrozenClock, settings: Settings, receiver: Receiver
) -> None:
    own = "whsec_" + base64.b64encode(b"p" * 32).decode()
    configured = settings.model_copy(update={"webhook_secret": SECRET})
    with engine.begin() as conn:
        enqueue(
            conn,
            clock,
            kind="webhook",
            key="own",
            payload={"url": receiver.url, "body": {"a": 1}, "sign": True, "secret": own},
        )
    deliver_due(engine, clock, configured)
    [(_, headers, body)] = receiver.requests
    assert Webhook(own).verify(body, headers) == {"a": 1}


def test_unsigned_slack_style_webhook_has_no_signature_headers(
    engine: Engine, clock: FrozenClock, settings: Settings, receiver: Receiver
) -> None:
    with engine.begin() as conn:
        enqueue(
            conn,
            clock,
            kind="webhook",
            key="slack",
            payload={"url": receiver.url, "body": {"text": "ホットリード: 山田様"}, "sign": False},
        )
    deliver_due(engine, clock, settings)
    [(_, headers, body)] = receiver.requests
    assert "webhook-signature" not in headers
    assert json.loads(body) == {"text": "ホットリード: 山田様"}


def test_5xx_is_retried_until_it_succeeds_with_one_delivery(
    engine: Engine, clock: FrozenClock, settings: Settings, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    hook(engine, clock, "retry", receiver.url, sign=False)
    deliver_due(engine, clock, settings)
    assert status_of(engine, "retry")[:2] == (Status.PENDING, 1)
    for _ in range(3):
        clock.advance(timedelta(hours=7))
        deliver_due(engine, clock, settings)
    state, attempts, _ = status_of(engine, "retry")
    assert (state, attempts) == (Status.SENT, 3)
    assert len(receiver.requests) == 3


@pytest.mark.parametrize("status", [408, 429])
def test_408_and_429_are_temporary(
    engine: Engine, clock: FrozenClock, settings: Settings, receiver: Receiver, status: int
) -> None:
    receiver.statuses = [status]
    hook(engine, clock, "slow-down", receiver.url, sign=False)
    deliver_due(engine, clock, settings)
    assert status_of(engine, "slow-down")[0] is Status.PENDING


def test_4xx_is_a_permanent_failure(
    engine: Engine, clock: FrozenClock, settings: Settings, receiver: Receiver
) -> None:
    receiver.statuses = [404]
    hook(engine, clock, "gone", receiver.url, sign=False)
    deliver_due(engine, clock, settings)
    clock.advance(timedelta(days=1))
    deliver_due(engine, clock, settings)
    state, _, error = status_of(engine, "gone")
    assert state is Status.FAILED
    assert error is not None
    assert "HTTP 404" in error
    assert len(receiver.requests) == 1


def test_a_timeout_is_temporary(
    engine: Engine, clock: FrozenClock, settings: Settings, receiver: Receiver
) -> None:
    receiver.delay = 0.5
    configured = settings.model_copy(update={"webhook_timeout_seconds": 0.1})
    hook(engine, clock, "timeout", receiver.url, sign=False)
    deliver_due(engine, clock, configured)
    state, _, error = status_of(engine, "timeout")
    assert state is Status.PENDING
    assert error is not None
    assert error.startswith("timed out calling 127.0.0.1")


def test_sign_without_any_secret_configured_goes_unsigned(
    engine: Engine, clock: FrozenClock, settings: Settings, receiver: Receiver
) -> None:
    hook(engine, clock, "nosecret", receiver.url, sign=True)
    deliver_due(engine, clock, settings)
    assert status_of(engine, "nosecret")[0] is Status.SENT
    [(_, headers, _)] = receiver.requests
    assert "webhook-signature" not in headers


def test_an_unreachable_target_is_temporary(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    from smtp_server import _free_port

    hook(engine, clock, "down", f"http://127.0.0.1:{_free_port()}/", sign=False)
    deliver_due(engine, clock, settings)
    assert status_of(engine, "down")[0] is Status.PENDING


def test_a_bad_url_is_a_permanent_failure(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hook(engine, clock, "ftp", "ftp://example.com/x", sign=False)
    deliver_due(engine, clock, settings)
    assert status_of(engine, "ftp")[0] is Status.FAILED


def test_a_malformed_secret_fails_at_start_up_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="EKIDEN_WEBHOOK_SECRET"):
        load_settings(webhook_secret="not-a-secret")
