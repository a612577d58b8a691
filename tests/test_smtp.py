"""The SMTP transport against a real SMTP server (aiosmtpd): pooled connections, DKIM,
temporary and permanent failures, and the "mail" kind end to end through the outbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine

from ekiden.clock import FrozenClock
from ekiden.config import ConfigError, Settings, load_settings
from ekiden.outbox import DeliveryError, Status, deliver_due, enqueue, entry_by_key
from ekiden.outbox.dkim import DkimSigner
from ekiden.outbox.ratelimit import RateLimiter
from ekiden.outbox.smtp import SmtpServer, SmtpTransport
from ekiden.outbox.verp import entry_id_from_address
from smtp_server import SmtpTestServer


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def mail_settings(settings: Settings, smtp: SmtpTestServer, **extra: object) -> Settings:
    return settings.model_copy(
        update={
            "smtp_url": smtp.url,
            "mail_from": "Ekiden <noreply@example.co.jp>",
            "bounce_address": "bounces@mail.example.co.jp",
            **extra,
        }
    )


def notify(engine: Engine, clock: FrozenClock, key: str, to: list[str]) -> None:
    with engine.begin() as conn:
        enqueue(
            conn,
            clock,
            kind="mail",
            key=key,
            payload={
                "to": to,
                "subject": "ホットリード: 山田 太郎様",
                "text": "スコアが 80 を超えました。",
                "html": "<p>スコアが <b>80</b> を超えました。</p>",
            },
        )


def verify_with_dns(data: bytes, signer: DkimSigner) -> bool:
    record = signer.public_record().encode()
    return bool(dkim.verify(data, dnsfunc=lambda name, timeout=5: record))


def test_mail_kind_arrives_with_both_parts_and_a_verp_sender(
    engine: Engine, clock: FrozenClock, settings: Settings, smtp: SmtpTestServer
) -> None:
    configured = mail_settings(settings, smtp)
    notify(engine, clock, "alert-1", ["sales@example.co.jp"])
    assert deliver_due(engine, clock, configured) == 1
    [received] = smtp.received
    [message] = smtp.parsed()
    assert received.recipients == ["sales@example.co.jp"]
    assert message["Subject"] == "ホットリード: 山田 太郎様"
    assert message["From"] == "Ekiden <noreply@example.co.jp>"
    assert message["Auto-Submitted"] == "auto-generated"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert "80 を超えました" in text.get_content()
    assert html is not None
    assert "<b>80</b>" in html.get_content()
    with engine.connect() as conn:
        entry = entry_by_key(conn, "alert-1")
    assert entry is not None
    assert entry.status is Status.SENT
    assert entry.message_id == message["Message-ID"]
    assert received.sender.startswith("bounces+")
    assert entry_id_from_address(configured, received.sender) == entry.id


def test_dkim_signature_of_what_arrived_verifies(
    engine: Engine, clock: FrozenClock, settings: Settings, smtp: SmtpTestServer, dkim_key: Path
) -> None:
    configured = mail_settings(
        settings,
        smtp,
        dkim_domain="example.co.jp",
        dkim_selector="ekiden1",
        dkim_private_key_path=str(dkim_key),
    )
    notify(engine, clock, "signed", ["sales@example.co.jp"])
    deliver_due(engine, clock, configured)
    [received] = smtp.received
    signer = DkimSigner.from_settings(configured)
    assert signer is not None
    assert received.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert verify_with_dns(received.data, signer)


def test_a_changed_body_fails_dkim_verification(
    smtp: SmtpTestServer, settings: Settings, dkim_key: Path
) -> None:
    configured = mail_settings(
        settings,
        smtp,
        dkim_domain="example.co.jp",
        dkim_selector="s1",
        dkim_private_key_path=str(dkim_key),
    )
    transport = SmtpTransport.from_settings(configured)
    message = EmailMessage()
    message["From"] = "noreply@example.co.jp"
    message["To"] = "a@example.com"
    message["Subject"] = "hello"
    message.set_content("original body\n")
    transport.send(message)
    transport.close()
    [received] = smtp.received
    signer = DkimSigner.from_settings(configured)
    assert signer is not None
    assert verify_with_dns(received.data, signer)
    assert not verify_with_dns(received.data.replace(b"original", b"changed!"), signer)


def test_one_connection_serves_many_messages(smtp: SmtpTestServer, settings: Settings) -> None:
    transport = SmtpTransport.from_settings(mail_settings(settings, smtp))
    for n in range(20):
        message = EmailMessage()
        message["From"] = "noreply@example.co.jp"
        message["To"] = f"user{n}@example.com"
        message["Subject"] = f"n{n}"
        message.set_content("hi")
        transport.send(message)
    transport.close()
    assert transport.connections_opened == 1
    assert len(smtp.received) == 20


def test_server_answering_4xx_then_recovering_loses_and_doubles_nothing(
    engine: Engine, clock: FrozenClock, settings: Settings, smtp: SmtpTestServer
) -> None:
    configured = mail_settings(settings, smtp)
    for n in range(30):
        notify(engine, clock, f"m{n}", [f"sales{n}@example.co.jp"])
    smtp.fail_next(12, "451 4.3.0 temporarily unavailable")
    for _ in range(20):
        deliver_due(engine, clock, configured)
        clock.advance(timedelta(hours=7))  # past any backoff
    counts = smtp.count_by_message_id()
    assert len(counts) == 30
    assert set(counts.values()) == {1}
    with engine.connect() as conn:
        entries = [entry_by_key(conn, f"m{n}") for n in range(30)]
    assert all(e is not None and e.status is Status.SENT for e in entries)
    assert sum(e.attempts for e in entries if e is not None) == 30 + 12


def test_server_down_for_a_while_keeps_mail_pending_until_it_recovers(
    engine: Engine, clock: FrozenClock, settings: Settings, smtp: SmtpTestServer
) -> None:
    configured = mail_settings(settings, smtp)
    notify(engine, clock, "wait", ["sales@example.co.jp"])
    smtp.fail_all("421 4.3.2 service not available")
    deliver_due(engine, clock, configured)
    with engine.connect() as conn:
        entry = entry_by_key(conn, "wait")
    assert entry is not None
    assert entry.status is Status.PENDING
    assert entry.last_error is not None
    assert "421" in entry.last_error
    smtp.recover()
    clock.advance(timedelta(hours=1))
    deliver_due(engine, clock, configured)
    assert len(smtp.received) == 1


def test_5xx_is_a_permanent_failure_recorded_once(
    engine: Engine, clock: FrozenClock, settings: Settings, smtp: SmtpTestServer
) -> None:
    configured = mail_settings(settings, smtp)
    smtp.refuse_recipient("nobody@example.co.jp", "550 5.1.1 no such user")
    notify(engine, clock, "refused", ["nobody@example.co.jp"])
    deliver_due(engine, clock, configured)
    clock.advance(timedelta(days=1))
    assert deliver_due(engine, clock, configured) == 0
    with engine.connect() as conn:
        entry = entry_by_key(conn, "refused")
    assert entry is not None
    assert entry.status is Status.FAILED
    assert entry.last_error is not None
    assert "550 5.1.1" in entry.last_error
    assert smtp.received == []


def test_data_refused_with_5xx_is_permanent(smtp: SmtpTestServer, settings: Settings) -> None:
    transport = SmtpTransport.from_settings(mail_settings(settings, smtp))
    smtp.fail_next(1, "554 5.7.1 message rejected as spam")
    message = EmailMessage()
    message["From"] = "noreply@example.co.jp"
    message["To"] = "a@example.com"
    message.set_content("x")
    with pytest.raises(DeliveryError) as caught:
        transport.send(message)
    assert caught.value.permanent
    assert "554 5.7.1" in caught.value.reason
    transport.close()


def test_a_partly_refused_message_counts_as_sent_and_reports_the_refused(
    smtp: SmtpTestServer, settings: Settings
) -> None:
    transport = SmtpTransport.from_settings(mail_settings(settings, smtp))
    smtp.refuse_recipient("gone@example.com", "550 5.1.1 no such user")
    message = EmailMessage()
    message["From"] = "noreply@example.co.jp"
    message["To"] = "ok@example.com, gone@example.com"
    message["Bcc"] = "audit@example.com"
    message.set_content("x")
    refused = transport.send(message)
    transport.close()
    assert list(refused) == ["gone@example.com"]
    [received] = smtp.received
    assert received.recipients == ["ok@example.com", "audit@example.com"]
    assert b"audit@example.com" not in received.data  # Bcc never shows in the header


def test_no_smtp_server_configured_keeps_mail_waiting(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    configured = settings.model_copy(update={"mail_from": "noreply@example.co.jp"})
    notify(engine, clock, "nowhere", ["sales@example.co.jp"])
    deliver_due(engine, clock, configured)
    with engine.connect() as conn:
        entry = entry_by_key(conn, "nowhere")
    assert entry is not None
    assert entry.status is Status.PENDING
    assert entry.last_error == "no SMTP server configured (EKIDEN_SMTP_URL)"


def test_unreachable_server_is_a_temporary_failure(settings: Settings) -> None:
    from smtp_server import _free_port

    configured = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{_free_port()}"})
    transport = SmtpTransport.from_settings(configured)
    message = EmailMessage()
    message["From"] = "noreply@example.co.jp"
    message["To"] = "a@example.com"
    message.set_content("x")
    with pytest.raises(DeliveryError) as caught:
        transport.send(message)
    assert not caught.value.permanent
    assert "cannot connect" in caught.value.reason


def test_rate_limit_spaces_messages_to_the_configured_rate() -> None:
    limiter = RateLimiter(50)
    started = time.monotonic()
    for _ in range(75):  # a burst of 50, then 25 more at 50/s
        limiter.wait()
    assert time.monotonic() - started >= 0.45


def test_bad_dkim_key_fails_at_start_up_naming_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="EKIDEN_DKIM_PRIVATE_KEY_PATH"):
        load_settings(
            dkim_domain="example.co.jp", dkim_selector="s1", dkim_private_key_path=str(bad)
        )
    with pytest.raises(ConfigError, match="EKIDEN_DKIM_SELECTOR"):
        load_settings(dkim_domain="example.co.jp", dkim_private_key_path=str(bad))


def test_dkim_public_record_is_a_txt_record(dkim_key: Path, settings: Settings) -> None:
    configured = settings.model_copy(
        update={
            "dkim_domain": "example.co.jp",
            "dkim_selector": "s1",
            "dkim_private_key_path": str(dkim_key),
        }
    )
    signer = DkimSigner.from_settings(configured)
    assert signer is not None
    assert signer.public_record().startswith("v=DKIM1; k=rsa; p=MIIBIjAN")


def test_smtp_auth_logs_in_with_the_credentials_of_the_url(settings: Settings) -> None:
    with SmtpTestServer(login=("mailer", "p@ss word")) as server:
        url = f"smtp://mailer:p%40ss%20word@127.0.0.1:{server.port}"
        transport = SmtpTransport.from_settings(settings.model_copy(update={"smtp_url": url}))
        message = EmailMessage()
        message["From"] = "noreply@example.co.jp"
        message["To"] = "a@example.com"
        message.set_content("x")
        transport.send(message)
        transport.close()
        assert len(server.received) == 1


def test_starttls_is_used_when_the_server_offers_it(settings: Settings) -> None:
    with SmtpTestServer(starttls=True) as server:
        transport = SmtpTransport(
            SmtpServer.from_url(server.url),
            settings=settings,
            tls_context=server.client_tls_context(),
        )
        message = EmailMessage()
        message["From"] = "noreply@example.co.jp"
        message["To"] = "a@example.com"
        message.set_content("over TLS")
        transport.send(message)
        assert transport.used_tls
        transport.close()
        assert len(server.received) == 1


def test_an_untrusted_certificate_is_a_temporary_failure(settings: Settings) -> None:
    with SmtpTestServer(starttls=True) as server:
        transport = SmtpTransport.from_settings(
            settings.model_copy(update={"smtp_url": server.url})
        )
        message = EmailMessage()
        message["From"] = "noreply@example.co.jp"
        message["To"] = "a@example.com"
        message.set_content("x")
        with pytest.raises(DeliveryError) as caught:
            transport.send(message)
        assert not caught.value.permanent
        assert "CERTIFICATE_VERIFY_FAILED" in caught.value.reason
        assert server.received == []
