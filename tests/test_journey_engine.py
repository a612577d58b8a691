"""The journey engine's guarantees: every side effect exactly once, whatever retries,
repeats, crashes or concurrent workers do."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tables import contacts
from ekiden.contacts.tags import tags_of
from ekiden.db import create_db_engine
from ekiden.journeys import actions, service
from ekiden.journeys.engine import MAX_ATTEMPTS, advance, claim_due, run_due
from ekiden.journeys.tables import enrolment_steps, enrolments
from ekiden.outbox.tables import outbox

TWO_WEBHOOKS: dict[str, Any] = {
    "key": "partner",
    "name": "partner",
    "entry": {"triggers": [{"manual": True}]},
    "start": "first",
    "nodes": [
        {"id": "first", "type": "webhook", "url": "http://partner.example/a", "next": "w"},
        {"id": "w", "type": "wait", "duration": "1d", "next": "second"},
        {"id": "second", "type": "webhook", "url": "http://partner.example/b", "next": "tag"},
        {"id": "tag", "type": "add_tag", "tag": "done"},
    ],
}


def many_contacts(engine: Engine, clock: FrozenClock, count: int) -> list[int]:
    now = clock.now()
    with engine.begin() as conn:
        conn.execute(
            insert(contacts),
            [
                {"email": f"c{i}@example.jp", "custom": {}, "created_at": now, "updated_at": now}
                for i in range(count)
            ],
        )
        return list(conn.execute(select(contacts.c.id).order_by(contacts.c.id)).scalars())


def set_up(
    engine: Engine, clock: FrozenClock, settings: Settings, count: int, definition: dict[str, Any]
) -> list[int]:
    ids = many_contacts(engine, clock, count)
    with engine.begin() as conn:
        service.create_journey(conn, clock, definition, settings.zone)
        service.activate_journey(conn, clock, definition["key"], settings.zone)
        enrolled, _ = service.enrol_contacts(
            conn, clock, definition["key"], ids, zone=settings.zone
        )
    assert len(enrolled) == count
    return ids


def outbox_keys(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox.c.key)).scalars())


def drain(engine: Engine, clock: FrozenClock, settings: Settings) -> None:
    while run_due(engine, clock, settings):
        pass


def test_running_the_same_due_step_twice_sends_once(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    set_up(engine, clock, settings, 3, TWO_WEBHOOKS)
    with engine.begin() as conn:
        for row in claim_due(conn, clock.now(), 10):
            advance(conn, clock, settings, row.id)
            advance(conn, clock, settings, row.id)  # a repeat: not due any more
    drain(engine, clock, settings)
    assert len(outbox_keys(engine)) == 3
    clock.advance(timedelta(days=1))
    drain(engine, clock, settings)
    drain(engine, clock, settings)
    keys = outbox_keys(engine)
    assert len(keys) == len(set(keys)) == 6


def test_a_step_that_dies_midway_rolls_back_and_is_retried(
    engine: Engine, clock: FrozenClock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = {
        **TWO_WEBHOOKS,
        "nodes": [
            {"id": "first", "type": "webhook", "url": "http://partner.example/a", "next": "tag"},
            {"id": "tag", "type": "add_tag", "tag": "done"},
        ],
    }
    (contact,) = set_up(engine, clock, settings, 1, definition)
    real = actions.ACTIONS["add_tag"]

    def dying(ctx: actions.ActionContext, node: Any) -> dict[str, Any]:
        real(ctx, node)
        raise RuntimeError("worker killed")

    monkeypatch.setitem(actions.ACTIONS, "add_tag", dying)
    assert run_due(engine, clock, settings) == 1
    # the webhook of the same pass was rolled back with the failing node
    assert outbox_keys(engine) == []
    with engine.connect() as conn:
        row = conn.execute(select(enrolments)).one()
        assert (row.node, row.state, row.attempts) == ("first", "running", 1)
        assert "worker killed" in row.last_error
        assert tags_of(conn, contact) == []
    assert run_due(engine, clock, settings) == 0  # backing off
    monkeypatch.setitem(actions.ACTIONS, "add_tag", real)
    clock.advance(timedelta(minutes=5))
    assert run_due(engine, clock, settings) == 1
    assert len(outbox_keys(engine)) == 1
    with engine.connect() as conn:
        row = conn.execute(select(enrolments)).one()
        assert (row.node, row.state, row.attempts) == ("tag", "completed", 0)
        assert tags_of(conn, contact) == ["done"]


def test_a_step_that_keeps_failing_ends_as_failed(
    engine: Engine, clock: FrozenClock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_up(engine, clock, settings, 1, TWO_WEBHOOKS)

    def broken(ctx: actions.ActionContext, node: Any) -> dict[str, Any]:
        raise RuntimeError("partner config broken")

    monkeypatch.setitem(actions.ACTIONS, "webhook", broken)
    for _ in range(MAX_ATTEMPTS):
        run_due(engine, clock, settings)
        clock.advance(timedelta(hours=2))
    with engine.connect() as conn:
        row = conn.execute(select(enrolments)).one()
        assert row.state == "failed"
        results = list(conn.execute(select(enrolment_steps.c.result)).scalars())
    assert results == ["failed"]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_workers_on_postgres_do_every_side_effect_exactly_once(
    db_url: str, engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    count = 1500
    set_up(engine, clock, settings, count, TWO_WEBHOOKS)
    claimed: list[int] = []

    def work() -> None:
        own = create_db_engine(db_url)
        try:
            while done := run_due(own, clock, settings, batch=100):
                claimed.append(done)
        finally:
            own.dispose()

    for _ in range(2):  # both webhooks: now, and after the wait
        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clock.advance(timedelta(days=1))
    keys = outbox_keys(engine)
    assert len(keys) == len(set(keys)) == 2 * count
    with engine.connect() as conn:
        done = conn.execute(
            select(func.count()).select_from(enrolments).where(enrolments.c.state == "completed")
        ).scalar_one()
        passed = conn.execute(
            select(enrolment_steps.c.node, func.count())
            .where(enrolment_steps.c.result == "next")
            .group_by(enrolment_steps.c.node)
        ).all()
    assert done == count
    assert {n: int(c) for n, c in passed} == {
        "first": count,
        "w": count,
        "second": count,
        "tag": count,
    }
    assert sum(claimed) == 2 * count


def test_a_fact_seen_by_two_workers_enrols_once_even_under_always(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    definition = {
        **TWO_WEBHOOKS,
        "entry": {"triggers": [{"manual": True}], "reentry": "always"},
    }
    ids = set_up(engine, clock, settings, 1, definition)
    entry = {ids[0]: "segment:7:2026-11-02T00:00:00+00:00"}
    outcomes = []
    for _ in range(2):  # what a second worker racing the first would try
        with engine.begin() as conn:
            outcomes.append(
                service.enrol_contacts(
                    conn, clock, "partner", ids, zone=settings.zone, trigger="segment:7",
                    slots=entry,
                )
            )  # fmt: skip
    assert outcomes == [(ids, []), ([], ids)]
