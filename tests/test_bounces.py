"""Bounces and complaints: DSNs (RFC 3464) and ARF reports (RFC 5965) built with the
``email`` package, through the API and the CLI; hard bounces and complaints suppress."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import contacts
from ekiden.outbox import enqueue
from ekiden.outbox.bounces import ingest_report
from ekiden.outbox.tables import outbox
from ekiden.outbox.verp import bounce_address_for, entry_id_from_address
from ekiden.tracking.tables import events

ORIGINAL_ID = "<abc123@mail.example.co.jp>"


def add_contact(engine: Engine, clock: FrozenClock, email: str) -> int:
    with engine.begin() as conn:
        return upsert_contact(conn, clock, email=email, source_kind="api").contact_id


def sent_entry(engine: Engine, clock: FrozenClock, contact_id: int, message_id: str) -> int:
    """An outbox entry as the dispatcher leaves it after sending."""
    with engine.begin() as conn:
        entry_id = enqueue(
            conn, clock, kind="mail", key=f"k-{message_id}", payload={}, contact_id=contact_id
        )
        conn.execute(
            outbox.update()
            .where(outbox.c.id == entry_id)
            .values(status="sent", message_id=message_id, sent_at=clock.now())
        )
    assert entry_id is not None
    return entry_id


def fields(*pairs: tuple[str, str]) -> Message:
    """One block of report fields (a part of message/delivery-status or feedback-report)."""
    block = Message()
    for name, value in pairs:
        block[name] = value
    return block


def dsn(
    recipient: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    to: str = "bounces@mail.example.co.jp",
    original_id: str | None = ORIGINAL_ID,
) -> bytes:
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.com"
    report["To"] = to
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report.attach(MIMEText("This is the mail system at host mx.example.com.\n", "plain"))
    status_part = MIMEBase("message", "delivery-status")
    status_part.set_payload(
        [
            fields(("Reporting-MTA", "dns; mx.example.com")),
            fields(
                ("Final-Recipient", f"rfc822; {recipient}"),
                ("Original-Recipient", f"rfc822;{recipient}"),
                ("Action", action),
                ("Status", status),
                ("Remote-MTA", "dns; mx.example.com"),
                ("Diagnostic-Code", f"smtp; 550 {status} <{recipient}>: Recipient rejected"),
            ),
        ]
    )
    report.attach(status_part)
    headers = MIMEBase("text", "rfc822-headers")
    original = f"From: info@example.co.jp\nTo: {recipient}\nSubject: hello\n"
    if original_id:
        original += f"Message-ID: {original_id}\n"
    headers.set_payload(original)
    report.attach(headers)
    return report.as_bytes()


def arf(recipient: str, *, return_path: str | None = None) -> bytes:
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "fbl@isp.example"
    report["To"] = "abuse@example.co.jp"
    report["Subject"] = "FW: hello"
    report.attach(MIMEText("This is an email abuse report.\n", "plain"))
    feedback = MIMEBase("message", "feedback-report")
    feedback.set_payload(
        [
            fields(
                ("Feedback-Type", "abuse"),
                ("User-Agent", "SomeISP/1.0"),
                ("Version", "1"),
                ("Original-Rcpt-To", recipient),
            )
        ]
    )
    report.attach(feedback)
    original = EmailMessage()
    if return_path:
        original["Return-Path"] = f"<{return_path}>"
    original["From"] = "info@example.co.jp"
    original["To"] = recipient
    original["Message-ID"] = ORIGINAL_ID
    original["Subject"] = "hello"
    original.set_content("buy now")
    wrapped = MIMEBase("message", "rfc822")
    wrapped.set_payload([original])
    report.attach(wrapped)
    return report.as_bytes()


def contact_state(engine: Engine, contact_id: int) -> tuple[object, object]:
    with engine.connect() as conn:
        row = conn.execute(
            select(contacts.c.suppressed_at, contacts.c.suppression_reason).where(
                contacts.c.id == contact_id
            )
        ).one()
    return row.suppressed_at, row.suppression_reason


def email_events(engine: Engine, contact_id: int) -> list[tuple[str, dict[str, object]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.type, events.c.properties)
            .where(events.c.contact_id == contact_id, events.c.source == "email")
            .order_by(events.c.id)
        ).all()
    return [(r.type, r.properties) for r in rows]


def test_hard_bounce_suppresses_the_contact_and_records_the_event(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    contact = add_contact(engine, clock, "taro@example.com")
    sent_entry(engine, clock, contact, ORIGINAL_ID)
    answer = admin.post("/api/bounces", content=dsn("taro@example.com"))
    assert answer.status_code == 200, answer.text
    [item] = answer.json()["items"]
    assert item["kind"] == "hard"
    assert item["status"] == "5.1.1"
    assert item["contact_id"] == contact
    assert item["suppressed"] is True
    assert contact_state(engine, contact) == (clock.now(), "hard_bounce")
    [(kind, props)] = email_events(engine, contact)
    assert kind == "email_bounced"
    assert props["bounce"] == "hard"
    assert props["status"] == "5.1.1"


def test_the_same_report_twice_is_recorded_once(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    contact = add_contact(engine, clock, "taro@example.com")
    raw = dsn("taro@example.com")
    for _ in range(2):
        with engine.begin() as conn:
            ingest_report(conn, clock, settings, raw)
    assert len(email_events(engine, contact)) == 1


def test_verp_address_names_the_message_even_when_the_recipient_was_forwarded(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    configured = settings.model_copy(update={"bounce_address": "bounces@mail.example.co.jp"})
    contact = add_contact(engine, clock, "hanako@example.com")
    entry_id = sent_entry(engine, clock, contact, "<other@x>")
    verp = bounce_address_for(configured, entry_id)
    assert verp is not None
    assert verp.startswith(f"bounces+{entry_id}-")
    # the bounce comes back for a forwarding address nobody knows, and quotes no Message-ID
    raw = dsn("forwarded@elsewhere.example", to=verp, original_id=None)
    with engine.begin() as conn:
        result = ingest_report(conn, clock, configured, raw)
    assert [i.contact_id for i in result.items] == [contact]
    assert contact_state(engine, contact)[1] == "hard_bounce"


def test_a_forged_verp_tag_names_no_message(settings: Settings) -> None:
    configured = settings.model_copy(update={"bounce_address": "bounces@mail.example.co.jp"})
    good = bounce_address_for(configured, 42)
    assert good is not None
    assert entry_id_from_address(configured, good) == 42
    assert entry_id_from_address(configured, good.replace("+42-", "+43-")) is None
    assert entry_id_from_address(configured, "bounces@mail.example.co.jp") is None


def test_soft_bounces_suppress_only_after_the_limit_within_the_window(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    contact = add_contact(engine, clock, "jiro@example.com")
    limit = settings.soft_bounce_limit
    for n in range(limit - 1):
        with engine.begin() as conn:
            ingest_report(
                conn,
                clock,
                settings,
                dsn("jiro@example.com", status="4.2.2", original_id=f"<{n}@x>"),
            )
    assert contact_state(engine, contact) == (None, None)
    # an old soft bounce leaves the window: still not enough
    clock.advance(timedelta(days=settings.soft_bounce_days + 1))
    with engine.begin() as conn:
        ingest_report(
            conn, clock, settings, dsn("jiro@example.com", status="4.2.2", original_id="<a@x>")
        )
    assert contact_state(engine, contact) == (None, None)
    for n in range(limit - 1):
        with engine.begin() as conn:
            ingest_report(
                conn,
                clock,
                settings,
                dsn("jiro@example.com", status="4.4.1", original_id=f"<b{n}@x>"),
            )
    assert contact_state(engine, contact) == (clock.now(), "soft_bounces")
    kinds = {props["bounce"] for _, props in email_events(engine, contact)}
    assert kinds == {"soft"}


@pytest.mark.parametrize(("action", "status"), [("delivered", "2.0.0"), ("delayed", "4.4.7")])
def test_delivered_and_delayed_recipients_in_a_dsn_are_not_bounces(
    engine: Engine, clock: FrozenClock, settings: Settings, action: str, status: str
) -> None:
    contact = add_contact(engine, clock, "taro@example.com")
    with engine.begin() as conn:
        result = ingest_report(
            conn, clock, settings, dsn("taro@example.com", action=action, status=status)
        )
    assert result.items == []
    assert email_events(engine, contact) == []


def test_complaint_suppresses_and_records_email_complained(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    contact = add_contact(engine, clock, "saburo@example.com")
    answer = admin.post("/api/bounces", content=arf("saburo@example.com"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"][0]["kind"] == "complaint"
    assert contact_state(engine, contact) == (clock.now(), "complaint")
    [(kind, props)] = email_events(engine, contact)
    assert kind == "email_complained"
    assert props["feedback_type"] == "abuse"


def test_complaint_finds_the_message_through_the_quoted_return_path(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    configured = settings.model_copy(update={"bounce_address": "bounces@mail.example.co.jp"})
    contact = add_contact(engine, clock, "shiro@example.com")
    entry_id = sent_entry(engine, clock, contact, "<unrelated@x>")
    verp = bounce_address_for(configured, entry_id)
    # the ISP redacts the recipient, as many feedback loops do
    with engine.begin() as conn:
        result = ingest_report(conn, clock, configured, arf("redacted", return_path=verp))
    assert [i.contact_id for i in result.items] == [contact]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"Subject: hi\n\nplain text", "expected Content-Type multipart/report"),
        (
            b'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"'
            b"\n\n--b\nContent-Type: text/plain\n\nx\n--b--\n",
            "unsupported report-type",
        ),
        (
            b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"'
            b"\n\n--b\nContent-Type: text/plain\n\nx\n--b--\n",
            "no message/delivery-status part",
        ),
    ],
)
def test_unparseable_input_is_422_and_stores_nothing(
    admin: TestClient,
    stored: Callable[[], dict[str, list[tuple[object, ...]]]],
    body: bytes,
    message: str,
) -> None:
    before = stored()
    answer = admin.post("/api/bounces", content=body)
    assert answer.status_code == 422
    assert message in answer.json()["error"]["message"]
    assert stored() == before


def test_bounce_endpoint_access(
    client: TestClient, ingest_key: str, settings: Settings, app: object
) -> None:
    raw = dsn("nobody@example.com")
    assert client.post("/api/bounces", content=raw).status_code == 401
    answer = client.post(
        "/api/bounces", content=raw, headers={"Authorization": f"Bearer {ingest_key}"}
    )
    assert answer.status_code == 403


def test_bounce_key_may_post_reports(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    from ekiden.web.app import create_app

    key = "b" * 40
    configured = settings.model_copy(update={"bounce_key": key})
    with TestClient(create_app(configured, engine=engine, clock=clock)) as client:
        answer = client.post(
            "/api/bounces",
            content=dsn("nobody@example.com"),
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 200
        wrong = client.post(
            "/api/bounces",
            content=dsn("nobody@example.com"),
            headers={"Authorization": f"Bearer {'c' * 40}"},
        )
        assert wrong.status_code == 401


def test_cli_ingests_a_bounce_from_a_file(
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ekiden.cli import app

    contact = add_contact(engine, clock, "cli@example.com")
    path = tmp_path / "bounce.eml"
    path.write_bytes(dsn("cli@example.com"))
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(app, ["bounces", "ingest", str(path)])
    assert result.exit_code == 0, result.output
    assert contact_state(engine, contact)[1] == "hard_bounce"
    bad = tmp_path / "bad.eml"
    bad.write_bytes(b"Subject: not a bounce\n\nhello")
    result = CliRunner().invoke(app, ["bounces", "ingest", str(bad)])
    assert result.exit_code == 65
    assert "multipart/report" in result.output


def test_bounce_of_an_email_carries_its_send_id_and_template_key(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    from ekiden.messaging.sends_tables import email_messages

    contact = add_contact(engine, clock, "goro@example.com")
    with engine.begin() as conn:
        message_id = conn.execute(
            email_messages.insert()
            .values(
                contact_id=contact,
                key="single:goro",
                template_key="winter-news",
                template_version=1,
                category="marketing",
                status="sent",
                message_id_header="<m-goro@example.co.jp>",
                queued_at=clock.now(),
            )
            .returning(email_messages.c.id)
        ).scalar_one()
        entry_id = enqueue(
            conn,
            clock,
            kind="email",
            key=f"email:{message_id}",
            payload={"message_id": message_id},
            contact_id=contact,
        )
        conn.execute(
            outbox.update()
            .where(outbox.c.id == entry_id)
            .values(status="sent", message_id="<m-goro@example.co.jp>")
        )
    with engine.begin() as conn:
        result = ingest_report(
            conn, clock, settings, dsn("goro@example.com", original_id="<m-goro@example.co.jp>")
        )
    assert [i.send_id for i in result.items] == [str(message_id)]
    [(_, props)] = email_events(engine, contact)
    assert props["send_id"] == str(message_id)
    assert props["email"] == "winter-news"
