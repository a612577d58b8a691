"""Email metrics per send and per email: sent, delivered, bounced, unique opens and clicks
(human and machine apart), unsubscribes and complaints."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

import ekiden.messaging.handler  # noqa: F401  (registers the "email" handler)
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.messaging import sends
from ekiden.messaging.sending import send_email
from ekiden.messaging.sends_models import SendIn
from ekiden.messaging.sends_tables import email_messages
from ekiden.outbox import deliver_due
from ekiden.tracking.events import NewEvent, record_events
from test_sending_support import SmtpSink, add_contacts, add_template, mail_settings, smtp_sink


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as server:
        yield server


@pytest.fixture
def settings(db_url: str, sink: SmtpSink) -> Settings:
    return mail_settings(db_url, sink.port)


def _events(engine: Engine, clock: FrozenClock, items: list[tuple[str, str, bool]]) -> None:
    with engine.begin() as conn:
        record_events(
            conn,
            clock,
            [
                NewEvent(
                    type=kind,
                    occurred_at=clock.now(),
                    source="email",
                    properties={"send_id": send_id, "email": "news"},
                    machine=machine,
                    machine_reason="scanner" if machine else None,
                )
                for kind, send_id, machine in items
            ],
        )


def test_send_and_email_metrics_count_unique_human_and_machine_activity(
    admin: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, sink: SmtpSink
) -> None:
    add_template(engine, clock)
    ids = add_contacts(engine, clock, 6)
    add_contacts(engine, clock, 1, consent="none", prefix="n")
    with engine.begin() as conn:
        send = sends.create_send(
            conn,
            clock,
            settings,
            SendIn.model_validate(
                {"template": "news", "audience": {"filter": {"field": "email", "op": "is_set"}}}
            ),
        )
        single = send_email(
            conn,
            clock,
            settings,
            template="news",
            contact_id=ids[0],
            key="journey:9:news",
            category="marketing",
        )
    while sends.dispatch_due(engine, clock, settings) + deliver_due(engine, clock, settings):
        pass
    with engine.connect() as conn:
        m = [
            str(i)
            for i in conn.execute(
                select(email_messages.c.id)
                .where(email_messages.c.send_id == send.id, email_messages.c.status == "sent")
                .order_by(email_messages.c.id)
            ).scalars()
        ]
    assert len(m) == 6
    _events(
        engine,
        clock,
        [
            ("email_opened", m[0], False),
            ("email_opened", m[0], False),  # a second open of the same message
            ("email_opened", m[1], False),
            ("email_opened", m[2], False),
            ("email_opened", m[2], True),
            ("email_opened", m[3], True),  # only a privacy proxy opened this one
            ("email_clicked", m[0], False),
            ("email_clicked", m[0], True),
            ("email_clicked", m[4], True),
            ("email_unsubscribed", m[1], False),
            ("email_complained", m[2], False),
            ("email_bounced", m[5], False),
            ("email_opened", "0", False),  # a test send's open: no message
            ("email_opened", str(single), False),
        ],
    )

    got = admin.get(f"/api/sends/{send.id}/metrics").json()
    assert {k: got[k] for k in got if k not in ("open_rate", "click_rate")} == {
        "messages": 7,
        "queued": 0,
        "skipped": 1,
        "failed": 0,
        "sent": 6,
        "delivered": 5,
        "bounced": 1,
        "opened": 3,
        "opened_machine": 2,
        "clicked": 1,
        "clicked_machine": 2,
        "unsubscribed": 1,
        "complained": 1,
        "skipped_reasons": {"no_consent": 1},
    }
    assert got["open_rate"] == pytest.approx(3 / 5, abs=1e-4)
    assert got["click_rate"] == pytest.approx(1 / 5, abs=1e-4)

    per_email = admin.get("/api/emails/news/metrics").json()
    assert (per_email["messages"], per_email["sent"], per_email["opened"]) == (8, 7, 4)


def test_metrics_of_unknown_send_or_email_are_not_found(admin: TestClient) -> None:
    assert admin.get("/api/sends/999/metrics").status_code == 404
    assert admin.get("/api/emails/nope/metrics").status_code == 404
