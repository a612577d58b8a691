"""The outbox email handler: consent re-checked at delivery, quiet hours, frequency caps,
the delivered event, and test sends — through a real local SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, update

import ekiden.messaging.handler  # noqa: F401  (registers the "email" handler)
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.consent import unsubscribe
from ekiden.contacts.tables import contacts
from ekiden.messaging import sends
from ekiden.messaging.sending import send_email
from ekiden.messaging.sends_models import SendIn
from ekiden.messaging.sends_tables import email_messages
from ekiden.outbox import deliver_due
from ekiden.outbox.tables import outbox
from ekiden.tracking.tables import events
from test_sending_support import (
    SmtpSink,
    add_contacts,
    add_template,
    mail_settings,
    smtp_sink,
    statuses,
)

# 2026-11-02 13:00 UTC is 22:00 in Tokyo
EVENING = datetime(2026, 11, 2, 13, 0, tzinfo=UTC)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as server:
        yield server


@pytest.fixture
def settings(db_url: str, sink: SmtpSink) -> Settings:
    return mail_settings(db_url, sink.port)


def _send(engine: Engine, clock: FrozenClock, settings: Settings, **fields: Any) -> int:
    with engine.begin() as conn:
        send = sends.create_send(
            conn, clock, settings, SendIn.model_validate({"template": "news", **fields})
        )
    while sends.dispatch_due(engine, clock, settings):
        pass
    return send.id


def _deliver(engine: Engine, clock: FrozenClock, settings: Settings) -> None:
    while deliver_due(engine, clock, settings):
        pass


def test_send_is_delivered_personalised_with_a_stable_message_id_and_an_event(
    engine: Engine, clock: FrozenClock, settings: Settings, sink: SmtpSink
) -> None:
    add_template(engine, clock)
    [contact] = add_contacts(engine, clock, 1)
    _send(engine, clock, settings, audience={"contact": contact})
    _deliver(engine, clock, settings)

    [got] = sink.received
    assert got.rcpt == ["c0@example.jp"]
    assert got.message["Subject"] == "山田0様へのお知らせ"
    assert got.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    with engine.connect() as conn:
        message = conn.execute(select(email_messages)).one()
        event = conn.execute(select(events).where(events.c.type == "email_delivered")).one()
    assert message.status == "sent"
    assert message.message_id_header == got.message["Message-ID"]
    assert str(message.id) in message.message_id_header
    assert event.contact_id == contact
    assert event.properties["send_id"] == str(message.id)
    assert event.properties["email"] == "news"


def test_unsubscribing_after_queueing_stops_the_queued_message(
    engine: Engine, clock: FrozenClock, settings: Settings, sink: SmtpSink
) -> None:
    add_template(engine, clock)
    stays, leaves = add_contacts(engine, clock, 2)
    _send(engine, clock, settings, audience={"filter": {"field": "email", "op": "is_set"}})
    with engine.begin() as conn:
        unsubscribe(conn, clock, leaves)
    _deliver(engine, clock, settings)

    assert sink.per_recipient() == {"c0@example.jp": 1}
    with engine.connect() as conn:
        reason = conn.execute(
            select(email_messages.c.status, email_messages.c.reason).where(
                email_messages.c.contact_id == leaves
            )
        ).one()
    assert tuple(reason) == ("skipped", "unsubscribed")
    assert stays != leaves


def test_quiet_hours_hold_marketing_mail_until_morning_in_the_contacts_zone(
    engine: Engine, db_url: str, sink: SmtpSink
) -> None:
    settings = mail_settings(db_url, sink.port, email_quiet_hours="21:00-08:00")
    clock = FrozenClock(EVENING)
    add_template(engine, clock)
    tokyo, new_york = add_contacts(engine, clock, 2, states=[{}, {"time_zone": "America/New_York"}])
    _send(engine, clock, settings, audience={"filter": {"field": "email", "op": "is_set"}})
    _deliver(engine, clock, settings)

    # 08:00 in New York: goes now; 22:00 in Tokyo: waits
    assert sink.per_recipient() == {"c1@example.jp": 1}
    with engine.connect() as conn:
        waiting = conn.execute(
            select(outbox.c.due_at).where(
                outbox.c.status == "pending", outbox.c.contact_id == tokyo
            )
        ).scalar_one()
    assert waiting == datetime(2026, 11, 2, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo

    clock.set(datetime(2026, 11, 2, 22, 59, tzinfo=UTC))
    _deliver(engine, clock, settings)
    assert len(sink.received) == 1
    clock.set(waiting)
    _deliver(engine, clock, settings)
    assert sink.per_recipient() == {"c0@example.jp": 1, "c1@example.jp": 1}
    assert statuses(engine) == {"sent": 2}
    assert new_york != tokyo


def test_frequency_cap_skips_marketing_over_the_cap_but_not_transactional(
    engine: Engine, clock: FrozenClock, db_url: str, sink: SmtpSink
) -> None:
    settings = mail_settings(db_url, sink.port, email_frequency_cap=1, email_frequency_days=7)
    add_template(engine, clock)
    add_template(engine, clock, "receipt", category="transactional")
    [contact] = add_contacts(engine, clock, 1)
    _send(engine, clock, settings, audience={"contact": contact})
    _deliver(engine, clock, settings)
    clock.advance(timedelta(days=6))
    _send(engine, clock, settings, audience={"contact": contact})
    with engine.begin() as conn:
        send_email(
            conn,
            clock,
            settings,
            template="receipt",
            contact_id=contact,
            key="receipt:1",
            category="transactional",
        )
    _deliver(engine, clock, settings)

    assert len(sink.received) == 2
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                email_messages.c.template_key, email_messages.c.status, email_messages.c.reason
            ).order_by(email_messages.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("news", "sent", None),
        ("news", "skipped", "frequency_cap"),
        ("receipt", "sent", None),
    ]
    # a week after the first, the cap allows one again
    clock.advance(timedelta(days=1, minutes=1))
    _send(engine, clock, settings, audience={"contact": contact})
    _deliver(engine, clock, settings)
    assert len(sink.received) == 3


def test_transactional_mail_ignores_quiet_hours_and_consent_but_not_suppression(
    engine: Engine, db_url: str, sink: SmtpSink
) -> None:
    settings = mail_settings(db_url, sink.port, email_quiet_hours="21:00-08:00")
    clock = FrozenClock(EVENING)
    add_template(engine, clock, "receipt", category="transactional")
    free, suppressed = add_contacts(
        engine, clock, 2, consent="none", states=[{}, {"suppressed_at": EVENING}]
    )
    with engine.begin() as conn:
        for contact in (free, suppressed):
            send_email(
                conn,
                clock,
                settings,
                template="receipt",
                contact_id=contact,
                key=f"receipt:{contact}",
                category="transactional",
            )
    _deliver(engine, clock, settings)

    assert sink.per_recipient() == {"c0@example.jp": 1}
    assert statuses(engine) == {"sent": 1, "skipped": 1}


def test_test_send_arrives_marked_and_is_no_message(
    admin: TestClient, engine: Engine, clock: FrozenClock, sink: SmtpSink, stored: Any
) -> None:
    add_template(engine, clock)
    [contact] = add_contacts(engine, clock, 1)
    before = stored()
    answer = admin.post(
        "/api/emails/news/test-send", json={"to": "Tester@Example.COM", "contact_id": contact}
    )
    assert answer.status_code == 200, answer.text
    [got] = sink.received
    assert got.rcpt == ["Tester@example.com"]
    assert got.message["X-Ekiden-Test"] == "yes"
    assert "山田0様へのお知らせ" in got.message["Subject"]
    assert got.message["Subject"] != "山田0様へのお知らせ"  # marked as a test
    assert stored() == before  # no message, no outbox row, no event


def test_test_send_to_a_bad_address_is_refused(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    add_template(engine, clock)
    answer = admin.post(
        "/api/emails/news/test-send", json={"to": "not an address", "contact_id": 1}
    )
    assert answer.status_code in (400, 422)
    assert "to" in answer.text


def test_unknown_contact_time_zone_falls_back_to_the_setting(
    engine: Engine, db_url: str, sink: SmtpSink
) -> None:
    settings = mail_settings(db_url, sink.port, email_quiet_hours="21:00-08:00")
    clock = FrozenClock(EVENING)
    add_template(engine, clock)
    [contact] = add_contacts(engine, clock, 1, states=[{"time_zone": "Mars/Olympus"}])
    with engine.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.id == contact).values(country="JP"))
    _send(engine, clock, settings, audience={"contact": contact})
    _deliver(engine, clock, settings)
    assert sink.received == []  # 22:00 in Asia/Tokyo, the setting's zone
