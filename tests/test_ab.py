"""A/B tests: variants to a test share, a winner by human clicks after the window (moved
with the FrozenClock), the winner to the rest, results with a two-proportion z-test."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

import ekiden.messaging.handler  # noqa: F401  (registers the "email" handler)
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.messaging import ab, sends
from ekiden.messaging.sends_models import AbTest, SendIn
from ekiden.messaging.sends_tables import email_messages
from ekiden.outbox import deliver_due
from ekiden.tracking.events import NewEvent, record_events
from test_sending_support import SmtpSink, add_contacts, add_template, mail_settings, smtp_sink

AB = {
    "variants": [{"name": "a", "subject": "A件名"}, {"name": "b", "subject": "B件名"}],
    "test_share": 0.5,
    "metric": "clicks",
    "window_hours": 4,
}


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as server:
        yield server


@pytest.fixture
def settings(db_url: str, sink: SmtpSink) -> Settings:
    return mail_settings(db_url, sink.port)


def _drain(engine: Engine, clock: FrozenClock, settings: Settings) -> None:
    while (
        sends.dispatch_due(engine, clock, settings)
        + ab.ab_step(engine, clock, settings)
        + deliver_due(engine, clock, settings)
    ):
        pass


def _click(engine: Engine, clock: FrozenClock, messages: list[int], *, machine: bool) -> None:
    with engine.begin() as conn:
        record_events(
            conn,
            clock,
            [
                NewEvent(
                    type="email_clicked",
                    occurred_at=clock.now(),
                    source="email",
                    properties={"send_id": str(m), "email": "news"},
                    machine=machine,
                    machine_reason="scanner" if machine else None,
                )
                for m in messages
            ],
        )


def test_winner_by_human_clicks_goes_to_the_rest_after_the_window(
    engine: Engine, clock: FrozenClock, settings: Settings, sink: SmtpSink
) -> None:
    add_template(engine, clock)
    add_contacts(engine, clock, 200)
    with engine.begin() as conn:
        send = sends.create_send(
            conn,
            clock,
            settings,
            SendIn.model_validate(
                {"template": "news", "audience": {"filter": {"field": "email", "op": "is_set"}}}
                | {"ab": AB}
            ),
        )
    _drain(engine, clock, settings)

    with engine.connect() as conn:
        rows = conn.execute(
            select(email_messages.c.id, email_messages.c.variant, email_messages.c.status)
        ).all()
    tested = {v: [r.id for r in rows if r.variant == v] for v in ("a", "b")}
    held = [r.id for r in rows if r.status == "held"]
    assert 60 <= len(tested["a"]) + len(tested["b"]) <= 140  # about half of 200
    assert len(tested["a"]) > 20
    assert len(tested["b"]) > 20
    assert Counter(str(r.message["Subject"]) for r in sink.received) == {
        "A件名": len(tested["a"]),
        "B件名": len(tested["b"]),
    }
    # b wins on people's clicks; a scanner clicking every link of a does not count
    b_hits = tested["b"][: len(tested["b"]) // 2]
    a_hits = tested["a"][:3]
    _click(engine, clock, b_hits, machine=False)
    _click(engine, clock, a_hits, machine=False)
    _click(engine, clock, tested["a"], machine=True)

    clock.advance(timedelta(hours=3, minutes=59))
    assert ab.ab_step(engine, clock, settings) == 0  # the window is still open
    clock.advance(timedelta(minutes=1))
    _drain(engine, clock, settings)

    with engine.connect() as conn:
        decided = sends.get_send(conn, send.id)
    assert decided.status == "sent"
    assert decided.ab_winner == "b"
    result = decided.ab_result
    assert result is not None
    n_a, n_b = len(tested["a"]), len(tested["b"])
    p_a, p_b = len(a_hits) / n_a, len(b_hits) / n_b
    pooled = (len(a_hits) + len(b_hits)) / (n_a + n_b)
    z = (p_b - p_a) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    assert result["z"] == pytest.approx(z, abs=1e-3)
    assert result["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-5)
    assert result["significant"] is True
    by_name = {v["name"]: v for v in result["variants"]}
    assert (by_name["a"]["converted"], by_name["b"]["converted"]) == (len(a_hits), len(b_hits))

    # the rest got the winner's subject; everyone got exactly one message
    assert len(sink.received) == 200
    assert set(sink.per_recipient().values()) == {1}
    subjects = Counter(str(r.message["Subject"]) for r in sink.received)
    assert subjects["B件名"] == len(tested["b"]) + len(held)


def test_ab_results_with_no_difference_are_not_significant() -> None:
    stat = ab.two_proportion_z(10, 100, 10, 100)
    assert stat is not None
    z, p = stat
    assert z == 0
    assert p == pytest.approx(1.0)
    assert ab.two_proportion_z(0, 0, 1, 10) is None


def test_assignment_is_deterministic_and_near_the_share() -> None:
    test = AbTest.model_validate(AB | {"test_share": 0.2})
    first = [sends.ab_assignment(7, c, test) for c in range(5000)]
    assert first == [sends.ab_assignment(7, c, test) for c in range(5000)]
    counts = Counter(first)
    assert 900 <= counts["a"] + counts["b"] <= 1100
    assert abs(counts["a"] - counts["b"]) < 150


def test_ab_variant_needs_a_subject_or_a_version(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    add_template(engine, clock)
    [contact] = add_contacts(engine, clock, 1)
    bad = AB | {"variants": [{"name": "a", "subject": "x"}, {"name": "b"}]}
    answer = admin.post(
        "/api/sends", json={"template": "news", "audience": {"contact": contact}, "ab": bad}
    )
    assert answer.status_code == 422
    assert "'b'" in answer.json()["error"]["message"]
    dup = AB | {"variants": [{"name": "a", "subject": "x"}, {"name": "a", "subject": "y"}]}
    answer = admin.post(
        "/api/sends", json={"template": "news", "audience": {"contact": contact}, "ab": dup}
    )
    assert answer.status_code in (400, 422)
    assert "distinct" in answer.text


def test_standing_of_a_running_test_is_readable(
    admin: TestClient, engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    add_contacts(engine, clock, 20)
    created = admin.post(
        "/api/sends",
        json={"template": "news", "audience": {"filter": {"field": "email", "op": "is_set"}}}
        | {"ab": AB | {"test_share": 1.0}},
    ).json()
    _drain(engine, clock, settings)
    standing = admin.get(f"/api/sends/{created['id']}/ab").json()
    assert sum(v["sent"] for v in standing["variants"]) == 20
    assert standing["p_value"] is None  # no clicks at all: no variation to test
