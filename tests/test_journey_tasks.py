"""A sales task's outcome is a ``task_outcome`` event: a journey waiting on it wakes at once
(R15: the call did not connect -> an on-site message on the next visit)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tags import tags_of
from ekiden.lifecycle.tables import sales_tasks
from ekiden.tracking.tables import events
from ekiden.worker import wait_until_idle
from test_journeys import journey_worker, person, start, state_of

CALL = "資料請求のお礼の電話"
MISSED_CALL: dict[str, Any] = {
    "key": "call-outcome",
    "name": "電話の結果で分岐",
    "entry": {"triggers": [{"manual": True}]},
    "start": "call",
    "nodes": [
        {"id": "call", "type": "create_task", "title": CALL, "due_in": "2d", "next": "wait"},
        {
            "id": "wait",
            "type": "wait_for",
            "event": {
                "event": "task_outcome",
                "where": [
                    {"property": "title", "op": "eq", "value": CALL},
                    {"property": "status", "op": "eq", "value": "done"},
                ],
            },
            "timeout": "14d",
            "next": "outcome",
        },
        {
            "id": "outcome",
            "type": "branch",
            "branches": [
                {
                    "when": {
                        "event": "task_outcome",
                        "where": [{"property": "outcome", "op": "eq", "value": "不在"}],
                    },
                    "next": "onsite",
                }
            ],
            "otherwise": "connected",
        },
        {"id": "onsite", "type": "onsite_message", "message": "何かお困りのことはありませんか?"},
        {"id": "connected", "type": "add_tag", "tag": "call-connected"},
    ],
}


def task_of(engine: Engine, contact: int) -> int:
    with engine.connect() as conn:
        found: int = conn.execute(
            select(sales_tasks.c.id).where(sales_tasks.c.contact_id == contact)
        ).scalar_one()
    return found


def outcome_events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(events.c.contact_id, events.c.properties)
                .where(events.c.type == "task_outcome")
                .order_by(events.c.id)
            )
        )


def test_a_task_outcome_wakes_the_waiting_journey_at_once(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    start(admin, MISSED_CALL)
    worker = journey_worker(engine, clock, settings)
    missed = person(engine, clock, "missed@example.jp")
    reached = person(engine, clock, "reached@example.jp")
    pending = person(engine, clock, "pending@example.jp")
    answer = admin.post(
        "/api/journeys/call-outcome/enrolments", json={"contact_ids": [missed, reached, pending]}
    )
    assert answer.status_code == 200, answer.text
    wait_until_idle(worker)
    assert all(state_of(engine, c) == ("wait", "waiting") for c in (missed, reached, pending))

    clock.advance(timedelta(hours=3))
    # notes that do not close the call, and a title change, wake nothing that matches
    answer = admin.patch(f"/api/tasks/{task_of(engine, missed)}", json={"title": CALL + "!"})
    assert answer.status_code == 200
    assert outcome_events(engine) == []  # neither status nor outcome changed
    admin.patch(f"/api/tasks/{task_of(engine, missed)}", json={"title": CALL})
    answer = admin.patch(
        f"/api/tasks/{task_of(engine, missed)}", json={"status": "done", "outcome": "不在"}
    )
    assert answer.status_code == 200, answer.text
    answer = admin.patch(
        f"/api/tasks/{task_of(engine, reached)}", json={"status": "done", "outcome": "話せた"}
    )
    assert answer.status_code == 200, answer.text
    recorded = outcome_events(engine)
    assert [(e.contact_id, e.properties["outcome"]) for e in recorded] == [
        (missed, "不在"),
        (reached, "話せた"),
    ]
    assert recorded[0].properties["status"] == "done"
    assert recorded[0].properties["previous_status"] == "open"
    assert recorded[0].properties["title"] == CALL

    wait_until_idle(worker)  # the clock has not moved: only the wake-up can explain progress
    assert state_of(engine, missed) == ("onsite", "completed")
    assert state_of(engine, reached) == ("connected", "completed")
    assert state_of(engine, pending) == ("wait", "waiting")
    messages = admin.get(f"/api/contacts/{missed}/onsite-messages").json()["items"]
    assert [m["message"] for m in messages] == ["何かお困りのことはありませんか?"]
    assert admin.get(f"/api/contacts/{reached}/onsite-messages").json()["items"] == []
    with engine.connect() as conn:
        assert tags_of(conn, reached) == ["call-connected"]
    history = admin.get(f"/api/contacts/{missed}/journeys").json()["items"][0]["steps"]
    passed = next(s for s in history if s["node"] == "wait" and s["result"] == "next")
    assert passed["at"].startswith(clock.now().isoformat()[:16])  # at the outcome, not later


def test_bad_task_updates_record_nothing(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    contact = person(engine, clock, "x@example.jp")
    created = admin.post("/api/tasks", json={"contact_id": contact, "title": CALL})
    assert created.status_code == 201, created.text
    task = created.json()["id"]
    answer = admin.patch("/api/tasks/999999", json={"status": "done", "outcome": "不在"})
    assert answer.status_code == 404
    answer = admin.patch(f"/api/tasks/{task}", json={"status": "finished"})
    assert answer.status_code == 422
    answer = admin.patch(f"/api/tasks/{task}", json={"outcome": ""})
    assert answer.status_code == 422
    assert outcome_events(engine) == []
    answer = admin.patch(f"/api/tasks/{task}", json={"status": "cancelled"})
    assert answer.status_code == 200
    # a closed task refuses changes until reopened: nothing recorded for the refusal
    answer = admin.patch(f"/api/tasks/{task}", json={"outcome": "不在"})
    assert answer.status_code == 409
    assert [e.properties["status"] for e in outcome_events(engine)] == ["cancelled"]
