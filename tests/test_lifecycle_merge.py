"""Lifecycle state follows a contact merge: tasks and hand-offs move to the winner, the
winner takes the further stage (recorded as a merge move), hot-lead states are kept once."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select
from tests.test_lifecycle import move, moves, person, settle, stage

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.lifecycle.tables import handoffs, hot_lead_definitions, hot_lead_states, sales_tasks


def merge(admin: TestClient, winner: int, loser: int) -> dict[str, Any]:
    answer = admin.post("/api/contacts/merge", json={"winner_id": winner, "loser_id": loser})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def walk(admin: TestClient, contact_id: int, *stages: str) -> None:
    for key in stages:
        body: dict[str, Any] = {"stage": key}
        if key == "won":
            body["deal_value"] = 500_000
        answer = move(admin, contact_id, **body)
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("winner_path", "loser_path", "expected", "recorded"),
    [
        ((), ("meeting",), "meeting", True),  # the loser was further along
        (("meeting",), (), "meeting", False),  # the winner was
        (("hot",), ("meeting", "won"), "won", True),  # a customer stays a customer
        (("meeting", "won"), ("hot",), "won", False),
        (("hot",), ("lost",), "hot", False),  # a lost record never closes an open one
        (("lost",), ("hot",), "lost", False),  # nor reopens a lost one
        (("lost",), ("meeting", "won"), "won", True),
    ],
)
def test_the_winner_takes_the_further_stage(
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin: TestClient,
    winner_path: tuple[str, ...],
    loser_path: tuple[str, ...],
    expected: str,
    recorded: bool,
) -> None:
    winner = person(engine, clock, "winner@example.co.jp")
    loser = person(engine, clock, "loser@example.co.jp")
    settle(engine, clock, settings)
    walk(admin, winner, *winner_path)
    walk(admin, loser, *loser_path)
    before = stage(admin, winner)["lifecycle_stage"]
    result = merge(admin, winner, loser)
    assert stage(admin, winner)["lifecycle_stage"] == expected
    history = moves(engine, winner)
    if recorded:
        assert history[-1] == (before, expected, "merge", None)
        assert result["moved"]["stage_moves"] == 1
    else:
        assert all(source != "merge" for _, _, source, _ in history)
        assert "stage_moves" not in result["moved"]
    # the loser's own history stays with it, for the record
    assert [to for _, to, _, _ in moves(engine, loser)][1:] == list(loser_path)


def test_buying_stage_follows_too(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    winner = person(engine, clock, "winner@example.co.jp")
    loser = person(engine, clock, "loser@example.co.jp")
    settle(engine, clock, settings)
    answer = move(admin, loser, stage="comparison", kind="buying")
    assert answer.status_code == 200, answer.text
    merge(admin, winner, loser)
    assert stage(admin, winner)["buying_stage"] == "comparison"
    assert moves(engine, winner, "buying")[-1][1:3] == ("comparison", "merge")


def test_tasks_hand_offs_and_hot_lead_states_move_to_the_winner(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    winner = person(engine, clock, "winner@example.co.jp")
    loser = person(engine, clock, "loser@example.co.jp")
    settle(engine, clock, settings)
    created = admin.post("/api/tasks", json={"contact_id": loser, "title": "電話する"})
    assert created.status_code == 201, created.text
    now = clock.now()
    with engine.begin() as conn:
        ids = [
            conn.execute(
                insert(hot_lead_definitions).values(
                    key=key,
                    name=key,
                    kind="hot_lead",
                    filter={"all": []},
                    emails=[],
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            for key in ("both", "loser_only")
        ]
        conn.execute(
            insert(hot_lead_states),
            [
                {"definition_id": ids[0], "contact_id": winner, "matching": False,
                 "crossings": 1, "changed_at": now, "checked_at": now},
                {"definition_id": ids[0], "contact_id": loser, "matching": True,
                 "crossings": 3, "changed_at": now, "checked_at": now},
                {"definition_id": ids[1], "contact_id": loser, "matching": True,
                 "crossings": 2, "changed_at": now, "checked_at": now},
            ],
        )  # fmt: skip
        conn.execute(
            insert(handoffs).values(
                definition_key="loser_only",
                kind="hot_lead",
                contact_id=loser,
                crossing=2,
                raised_at=now,
            )
        )
    result = merge(admin, winner, loser)
    assert result["moved"]["sales_tasks"] == 1
    assert result["moved"]["handoffs"] == 1
    tasks = admin.get("/api/tasks").json()["items"]
    assert [(t["contact_id"], t["title"]) for t in tasks] == [(winner, "電話する")]
    with engine.connect() as conn:
        states = conn.execute(
            select(hot_lead_states.c.definition_id, hot_lead_states.c.contact_id,
                   hot_lead_states.c.crossings).order_by(hot_lead_states.c.definition_id)
        ).all()  # fmt: skip
        handed = conn.execute(select(handoffs.c.contact_id)).scalars().all()
        owners = conn.execute(select(sales_tasks.c.contact_id)).scalars().all()
    assert [tuple(s) for s in states] == [(ids[0], winner, 1), (ids[1], winner, 2)]
    assert handed == [winner]
    assert owners == [winner]
