"""Four worker processes against PostgreSQL on 20,000 enrolments: every side effect happens
exactly once (emails, webhooks, stage moves, tags, history steps), and the work is shared."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from ekiden.bench.journeys import START, TEMPLATE_KEY, run_phases, set_up

# the benchmark's journey with a one-row action (add_tag) on both sides of the branch
JOURNEY: dict[str, Any] = {
    "key": "busy",
    "name": "busy",
    "entry": {"triggers": [{"manual": True}]},
    "start": "mail",
    "nodes": [
        {"id": "mail", "type": "send_email", "email": TEMPLATE_KEY, "next": "wait"},
        {"id": "wait", "type": "wait", "duration": "1d", "next": "decide"},
        {
            "id": "decide",
            "type": "branch",
            "branches": [
                {
                    "when": {"field": "job_title", "op": "in", "value": ["部長", "課長"]},
                    "next": "hook",
                },
            ],
            "otherwise": "tag",
        },
        {"id": "hook", "type": "webhook", "url": "http://partner.invalid/ship", "next": "tag"},
        {"id": "tag", "type": "add_tag", "tag": "done", "next": "stage"},
        {"id": "stage", "type": "change_stage", "stage": "hot"},
    ],
}

MOMENTS = [START, START + timedelta(days=1, seconds=1)]


def scalar(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def check_exactly_once(engine: Engine, count: int) -> None:
    """Everything the journey does happened once per enrolment, nothing more, nothing less."""
    assert scalar(engine, "SELECT count(*) FROM enrolments WHERE state = 'completed'") == count
    picked = scalar(
        engine, "SELECT count(*) FROM enrolment_steps WHERE node = 'decide' "
        "AND result = 'branches[0]'",
    )  # fmt: skip
    assert 0 < picked < count
    expected = {
        "SELECT count(DISTINCT contact_id) FROM email_messages": count,
        "SELECT count(*) FROM email_messages": count,
        "SELECT count(*) FROM outbox WHERE kind = 'email'": count,
        "SELECT count(*) FROM outbox WHERE kind = 'webhook'": picked,
        "SELECT count(DISTINCT contact_id) FROM outbox WHERE kind = 'webhook'": picked,
        "SELECT count(*) FROM stage_history WHERE to_stage = 'hot'": count,
        "SELECT count(DISTINCT contact_id) FROM stage_history WHERE to_stage = 'hot'": count,
        "SELECT count(*) FROM contacts WHERE lifecycle_stage = 'hot'": count,
        "SELECT count(*) FROM contact_tags WHERE tag = 'done'": count,
        # mail, wait (arrival and end), decide, tag, stage; hook on the yes side
        "SELECT count(*) FROM enrolment_steps": 6 * count + picked,
        "SELECT count(*) FROM (SELECT enrolment_id, node, result FROM enrolment_steps "
        "GROUP BY enrolment_id, node, result HAVING count(*) > 1) AS twice": 0,
    }
    found = {sql: scalar(engine, sql) for sql in expected}
    assert found == expected


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_four_worker_processes_do_every_side_effect_exactly_once(
    db_url: str, engine: Engine
) -> None:
    count = 20_000
    set_up(engine, count, journey=JOURNEY)
    seconds, claimed, _ = run_phases(db_url, 4, 250, MOMENTS)
    assert sum(claimed) == 2 * count  # each enrolment claimed once before, once after the wait
    assert all(c > 0 for c in claimed), claimed  # the four shared the work
    check_exactly_once(engine, count)
    assert seconds < 240
