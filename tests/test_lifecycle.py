"""Lifecycle and buying stages: entry, automatic forward moves, manual moves with their
rules, configuration, history and events."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import contacts
from ekiden.lifecycle.tables import stage_history
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events
from ekiden.worker import Worker, wait_until_idle

INQUIRY = {
    "event": "form_submitted",
    "where": [{"property": "form", "op": "eq", "value": "inquiry"}],
}
CASE_STUDIES = {
    "event": "page",
    "where": [{"property": "path", "op": "starts_with", "value": "/case-studies"}],
}
PRICING = {
    "event": "page",
    "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}],
}


def person(engine: Engine, clock: FrozenClock, email: str, **fields: Any) -> int:
    with engine.begin() as conn:
        return upsert_contact(
            conn, clock, email=email, changes=ContactChanges(**fields), source_kind="api"
        ).contact_id


def act(engine: Engine, clock: FrozenClock, contact_id: int, kind: str, **fields: Any) -> None:
    with engine.begin() as conn:
        record_events(
            conn,
            clock,
            [NewEvent(type=kind, occurred_at=clock.now(), source="api", contact_id=contact_id,
                      **fields)],
        )  # fmt: skip


def settle(engine: Engine, clock: FrozenClock, settings: Settings) -> None:
    wait_until_idle(Worker(engine, clock, settings))


def stage(admin: TestClient, contact_id: int) -> dict[str, Any]:
    answer = admin.get(f"/api/contacts/{contact_id}/stage")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def moves(engine: Engine, contact_id: int, kind: str = "lifecycle") -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                stage_history.c.from_stage,
                stage_history.c.to_stage,
                stage_history.c.source,
                stage_history.c.rule_id,
            )
            .where(stage_history.c.contact_id == contact_id, stage_history.c.kind == kind)
            .order_by(stage_history.c.id)
        )
        return [tuple(r) for r in rows]


def stage_events(engine: Engine, contact_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.properties, events.c.source)
            .where(events.c.contact_id == contact_id, events.c.type == "stage_changed")
            .order_by(events.c.id)
        )
        found = []
        for properties, source in rows:
            assert source == "system"
            found.append(properties)
        return found


def add_rule(admin: TestClient, target: str, flt: dict[str, Any], kind: str = "lifecycle") -> int:
    answer = admin.post(
        "/api/lifecycle/rules", json={"kind": kind, "name": f"to {target}", "target": target,
                                      "filter": flt},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    rule_id: int = answer.json()["id"]
    return rule_id


def move(admin: TestClient, contact_id: int, **body: Any) -> Any:
    return admin.post(f"/api/contacts/{contact_id}/stage", json=body)


def test_default_stages_have_names_in_both_languages_and_departments(admin: TestClient) -> None:
    body = admin.get("/api/lifecycle/stages").json()
    lifecycle = {s["key"]: s for s in body["lifecycle"]}
    assert [s["key"] for s in body["lifecycle"]] == [
        "acquired", "nurturing", "hot", "meeting", "won", "lost"
    ]  # fmt: skip
    assert lifecycle["hot"]["name"] == "ホット化"
    assert lifecycle["hot"]["name_en"] == "Hot (MQL)"
    assert lifecycle["meeting"]["name"] == "商談アポ"
    assert lifecycle["meeting"]["department"] == "sales"
    assert lifecycle["acquired"]["department"] == "marketing"
    assert (lifecycle["won"]["outcome"], lifecycle["lost"]["outcome"]) == ("won", "lost")
    assert [s["name"] for s in body["buying"]] == ["現状維持", "興味関心", "解決策模索", "比較検討"]


def test_new_contact_enters_the_first_stages_when_the_worker_sees_it(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    contact = person(engine, clock, "new@example.co.jp")
    assert stage(admin, contact)["lifecycle_stage"] is None
    settle(engine, clock, settings)
    state = stage(admin, contact)
    assert (state["lifecycle_stage"], state["buying_stage"]) == ("acquired", "status_quo")
    assert state["lifecycle_stage_at"] is not None
    assert admin.get(f"/api/contacts/{contact}").json()["lifecycle_stage"] == "acquired"
    assert moves(engine, contact) == [(None, "acquired", "entry", None)]
    assert moves(engine, contact, "buying") == [(None, "status_quo", "entry", None)]
    assert stage_events(engine, contact) == []  # entries: history only, no events


def test_inquiry_form_moves_a_contact_forward_by_rule_once(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    rule = add_rule(admin, "meeting", INQUIRY)
    asker = person(engine, clock, "asker@example.co.jp")
    reader = person(engine, clock, "reader@example.co.jp")
    act(engine, clock, asker, "form_submitted", properties={"form": "inquiry"})
    act(engine, clock, reader, "form_submitted", properties={"form": "newsletter"})
    settle(engine, clock, settings)
    assert stage(admin, asker)["lifecycle_stage"] == "meeting"
    assert stage(admin, reader)["lifecycle_stage"] == "acquired"
    assert moves(engine, asker) == [(None, "acquired", "entry", None),
                                    ("acquired", "meeting", "rule", rule)]  # fmt: skip
    act(engine, clock, asker, "form_submitted", properties={"form": "inquiry"})
    settle(engine, clock, settings)
    assert len(moves(engine, asker)) == 2  # already there: no second move


def test_rules_chain_forward_in_one_pass_and_never_go_back(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    any_page = {"event": "page"}
    to_nurturing = add_rule(admin, "nurturing", any_page)
    to_hot = add_rule(
        admin, "hot", {"all": [{"field": "lifecycle_stage", "op": "eq", "value": "nurturing"},
                               PRICING]}
    )  # fmt: skip
    visitor = person(engine, clock, "v@example.co.jp")
    act(engine, clock, visitor, "page", path="/pricing")
    settle(engine, clock, settings)
    assert moves(engine, visitor)[1:] == [
        ("acquired", "nurturing", "rule", to_nurturing),
        ("nurturing", "hot", "rule", to_hot),
    ]
    # the nurturing rule still matches, but rules never move a contact backwards
    act(engine, clock, visitor, "page", path="/")
    settle(engine, clock, settings)
    assert stage(admin, visitor)["lifecycle_stage"] == "hot"
    assert len(moves(engine, visitor)) == 3


def test_rules_do_not_reopen_closed_stages(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    add_rule(admin, "hot", {"event": "page"})
    lost = person(engine, clock, "lost@example.co.jp")
    settle(engine, clock, settings)
    assert move(admin, lost, stage="lost", note="budget frozen").status_code == 200
    act(engine, clock, lost, "page", path="/pricing")
    settle(engine, clock, settings)
    assert stage(admin, lost)["lifecycle_stage"] == "lost"


def test_sales_moves_to_meeting_then_won_with_a_deal_value(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    lead = person(engine, clock, "lead@example.co.jp")
    settle(engine, clock, settings)
    assert move(admin, lead, stage="meeting").status_code == 200
    answer = move(admin, lead, stage="won", deal_value=1_200_000, currency="JPY")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"]["lifecycle_stage"] == "won"
    assert body["move"]["from_stage"] == "meeting"
    assert body["move"]["deal_value"] == 1_200_000
    assert body["move"]["currency"] == "JPY"
    assert body["move"]["moved_by"].startswith("api:")
    won = stage_events(engine, lead)[-1]
    assert (won["to"], won["deal_value"], won["currency"], won["by"]) == (
        "won", 1_200_000, "JPY", "api"
    )  # fmt: skip
    history = admin.get(f"/api/contacts/{lead}/stage-history?kind=lifecycle").json()["items"]
    assert [h["to_stage"] for h in history] == ["won", "meeting", "acquired"]


REFUSED_MOVES: list[tuple[list[str], dict[str, Any], int, str]] = [
    ([], {"stage": "won", "deal_value": 5}, 409, "stage_skip"),
    (["hot"], {"stage": "hot"}, 409, "same_stage"),
    (["nurturing"], {"stage": "acquired"}, 409, "stage_backward"),
    (["meeting", "won"], {"stage": "lost"}, 409, "stage_closed"),
    (["meeting", "won"], {"stage": "meeting"}, 409, "stage_closed"),
    ([], {"stage": "closing"}, 422, "unknown_stage"),
    ([], {"stage": "hot", "kind": "funnel"}, 422, "invalid"),
    (["meeting"], {"stage": "won", "deal_value": "lots"}, 422, "invalid"),
    (["meeting"], {"stage": "won", "deal_value": -1}, 422, "invalid"),
    (["meeting"], {"stage": "won", "deal_value": 10, "currency": "yen"}, 422, "invalid"),
    ([], {"stage": "hot", "deal_value": 100}, 422, "deal_value_not_allowed"),
    ([], {"stage": "hot", "user_id": 999}, 422, "unknown_user"),
]


def test_move_that_is_not_allowed_is_refused_and_nothing_is_stored(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient, stored: Any
) -> None:
    leads = [person(engine, clock, f"lead{i}@example.co.jp") for i in range(len(REFUSED_MOVES))]
    settle(engine, clock, settings)
    for lead, (start, body, status, code) in zip(leads, REFUSED_MOVES, strict=True):
        for key in start:
            extra = {"deal_value": 1} if key == "won" else {}
            assert move(admin, lead, stage=key, **extra).status_code == 200
        before = stored()
        answer = move(admin, lead, **body)
        assert answer.status_code == status, (body, answer.text)
        error = answer.json()["error"]
        assert error["code"] == code, body
        assert error["message"]
        assert stored() == before, body


def test_hot_lead_can_be_sent_back_but_nurturing_cannot(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    lead = person(engine, clock, "lead@example.co.jp")
    settle(engine, clock, settings)
    assert move(admin, lead, stage="hot").status_code == 200
    assert move(admin, lead, stage="nurturing", note="not ready").status_code == 200
    refused = move(admin, lead, stage="acquired")
    assert refused.status_code == 409
    assert "earlier stage" in refused.json()["error"]["message"]


def test_lost_contact_can_be_reopened_by_hand(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    lead = person(engine, clock, "lead@example.co.jp")
    settle(engine, clock, settings)
    assert move(admin, lead, stage="lost").status_code == 200
    assert move(admin, lead, stage="nurturing").status_code == 200
    assert moves(engine, lead)[-2:] == [
        ("acquired", "lost", "api", None),
        ("lost", "nurturing", "api", None),
    ]


def test_stage_changes_show_in_segments(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    lead = person(engine, clock, "lead@example.co.jp")
    other = person(engine, clock, "other@example.co.jp")
    settle(engine, clock, settings)
    created = admin.post(
        "/api/segments",
        json={"slug": "mql", "name": "MQL",
              "filter": {"field": "lifecycle_stage", "op": "eq", "value": "hot"}},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert move(admin, lead, stage="hot").status_code == 200
    settle(engine, clock, settings)
    members = admin.get("/api/segments/mql/members").json()["items"]
    assert [m["id"] for m in members] == [lead]
    assert other not in [m["id"] for m in members]


def test_buying_stage_is_inferred_from_content_consumed(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    to_search = add_rule(admin, "solution_search", CASE_STUDIES, kind="buying")
    to_compare = add_rule(admin, "comparison", PRICING, kind="buying")
    researcher = person(engine, clock, "r@example.co.jp")
    comparer = person(engine, clock, "c@example.co.jp")
    act(engine, clock, researcher, "page", path="/case-studies/acme")
    act(engine, clock, comparer, "page", path="/pricing")
    settle(engine, clock, settings)
    assert stage(admin, researcher)["buying_stage"] == "solution_search"
    assert stage(admin, comparer)["buying_stage"] == "comparison"
    assert moves(engine, researcher, "buying")[-1] == (
        "status_quo", "solution_search", "rule", to_search
    )  # fmt: skip
    # a later case-study visit does not take the comparer back
    act(engine, clock, comparer, "page", path="/case-studies/acme")
    settle(engine, clock, settings)
    assert stage(admin, comparer)["buying_stage"] == "comparison"
    assert moves(engine, comparer, "buying")[-1][3] == to_compare
    # and the lifecycle stage is untouched by buying rules
    assert stage(admin, comparer)["lifecycle_stage"] == "acquired"


def test_stages_can_be_configured_and_a_stage_in_use_cannot_be_removed(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient, stored: Any
) -> None:
    custom = {
        "stages": [
            {"key": "lead", "name": "リード", "name_en": "Lead", "department": "marketing"},
            {"key": "sql", "name": "商談", "department": "sales", "allow_back": True},
            {"key": "customer", "name": "顧客", "outcome": "won", "allow_skip": False},
            {"key": "dropped", "name": "対象外", "outcome": "lost"},
        ]
    }
    answer = admin.put("/api/lifecycle/stages/lifecycle", json=custom)
    assert answer.status_code == 200, answer.text
    assert [s["position"] for s in answer.json()["items"]] == [0, 1, 2, 3]
    lead = person(engine, clock, "lead@example.co.jp")
    settle(engine, clock, settings)
    assert stage(admin, lead)["lifecycle_stage"] == "lead"
    refused = move(admin, lead, stage="customer")
    assert refused.json()["error"]["code"] == "stage_skip"
    before = stored()
    removing = admin.put("/api/lifecycle/stages/lifecycle", json={"stages": custom["stages"][1:]})
    assert removing.status_code == 409
    assert "lead (1 contacts)" in removing.json()["error"]["message"]
    assert stored() == before


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"stages": [{"key": "a", "name": "A"}, {"key": "a", "name": "B"}]}, "unique"),
        ({"stages": [{"key": "Hot Lead", "name": "A"}, {"key": "b", "name": "B"}]}, "key"),
        (
            {"stages": [{"key": "won", "name": "A", "outcome": "won"}, {"key": "b", "name": "B"}]},
            "first stage",
        ),
        ({"stages": [{"key": "a", "name": "A"}]}, "stages"),
    ],
)
def test_bad_stage_configuration_is_refused(
    admin: TestClient, stored: Any, body: dict[str, Any], fragment: str
) -> None:
    before = stored()
    answer = admin.put("/api/lifecycle/stages/lifecycle", json=body)
    assert answer.status_code == 422, answer.text
    assert fragment in answer.json()["error"]["message"]
    assert stored() == before


def test_buying_stages_have_no_outcome(admin: TestClient) -> None:
    answer = admin.put(
        "/api/lifecycle/stages/buying",
        json={"stages": [{"key": "a", "name": "A"}, {"key": "b", "name": "B", "outcome": "won"}]},
    )
    assert answer.status_code == 422
    assert "no outcome" in answer.json()["error"]["message"]


def test_rules_are_validated_and_can_be_changed_and_deleted(admin: TestClient, stored: Any) -> None:
    before = stored()
    bad_filter = admin.post(
        "/api/lifecycle/rules",
        json={"name": "x", "target": "hot", "filter": {"field": "shoe_size", "op": "eq",
                                                        "value": 1}},
    )  # fmt: skip
    assert bad_filter.status_code == 422
    assert "shoe_size" in bad_filter.json()["error"]["message"]
    bad_target = admin.post(
        "/api/lifecycle/rules", json={"name": "x", "target": "closing", "filter": INQUIRY}
    )
    assert bad_target.status_code == 422
    assert bad_target.json()["error"]["code"] == "unknown_stage"
    assert stored() == before
    rule = add_rule(admin, "hot", INQUIRY)
    changed = admin.patch(f"/api/lifecycle/rules/{rule}", json={"enabled": False})
    assert changed.json()["enabled"] is False
    assert admin.get("/api/lifecycle/rules?kind=lifecycle").json()["items"][0]["id"] == rule
    assert admin.delete(f"/api/lifecycle/rules/{rule}").status_code == 204
    assert admin.get(f"/api/lifecycle/rules/{rule}").status_code == 404


def test_a_stage_a_rule_leads_to_cannot_be_removed(admin: TestClient) -> None:
    add_rule(admin, "hot", INQUIRY)
    keep = [{"key": "acquired", "name": "獲得"}, {"key": "won", "name": "受注", "outcome": "won"}]
    answer = admin.put("/api/lifecycle/stages/lifecycle", json={"stages": keep})
    assert answer.status_code == 409
    assert "hot" in answer.json()["error"]["message"]


def test_stage_of_unknown_contact_is_not_found(admin: TestClient) -> None:
    assert admin.get("/api/contacts/999/stage").status_code == 404
    assert move(admin, 999, stage="hot").status_code == 404


def test_cli_enters_existing_contacts_and_prints_the_stages(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    now = clock.now()
    with engine.begin() as conn:  # as an old database holds them: never seen by the worker
        conn.execute(
            insert(contacts),
            [{"email": f"old{i}@example.co.jp", "custom": {}, "created_at": now,
              "updated_at": now} for i in range(5)],
        )  # fmt: skip
    lead = person(engine, clock, "lead@example.co.jp")
    settle(engine, clock, settings)
    assert move(admin, lead, stage="hot").status_code == 200
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(cli_app, ["lifecycle", "enter", "--slice-size", "2"])
    assert result.exit_code == 0, result.output
    assert "done: 10 stage entries written" in result.output
    with engine.connect() as conn:
        stages = conn.execute(select(contacts.c.lifecycle_stage, contacts.c.buying_stage)).all()
    assert sorted(stages) == [("acquired", "status_quo")] * 5 + [("hot", "status_quo")]
    monkeypatch.setenv("COLUMNS", "200")  # one row per stage
    listing = CliRunner().invoke(cli_app, ["lifecycle", "stages"])
    assert listing.exit_code == 0, listing.output
    assert "ホット化" in listing.output
    assert "解決策模索" in listing.output


MUTATIONS = [
    ("put", "/api/lifecycle/stages/lifecycle", {"stages": []}),
    ("post", "/api/lifecycle/rules", {}),
    ("patch", "/api/lifecycle/rules/1", {}),
    ("delete", "/api/lifecycle/rules/1", None),
    ("post", "/api/lifecycle/territories", {}),
    ("delete", "/api/lifecycle/territories/1", None),
    ("post", "/api/contacts/1/stage", {"stage": "hot"}),
]


def test_stage_changes_need_an_admin_key(client: TestClient, ingest_key: str) -> None:
    headers = {"Authorization": f"Bearer {ingest_key}"}
    for method, path, body in MUTATIONS:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        assert client.request(method, path, **kwargs).status_code == 401, path
        assert client.request(method, path, headers=headers, **kwargs).status_code == 403, path
