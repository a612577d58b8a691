"""Journeys end to end: triggers, waits, branches, timeouts, versions, re-entry, the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tags import add_tags, tags_of
from ekiden.journeys.definition import WaitUntil
from ekiden.journeys.tables import enrolments
from ekiden.journeys.triggers import journeys_contact_step, journeys_step
from ekiden.journeys.waits import next_in_window
from ekiden.outbox.tables import outbox
from ekiden.tracking.events import NewEvent, record_events
from ekiden.worker import Worker, wait_until_idle

SURVEY = [{"property": "form", "op": "eq", "value": "survey"}]
SAMPLE = [{"property": "form", "op": "eq", "value": "sample"}]

SAMPLE_OFFER: dict[str, Any] = {
    "key": "sample-offer",
    "name": "無料サンプルのご案内",
    "entry": {"triggers": [{"event": "form_submitted", "where": SURVEY}], "reentry": "never"},
    "goal": {"tag": "customer"},
    "start": "thanks",
    "nodes": [
        {"id": "thanks", "type": "add_tag", "tag": "surveyed", "next": "wait-request"},
        {
            "id": "wait-request",
            "type": "wait_for",
            "timeout": "7d",
            "event": {"event": "form_submitted", "where": SAMPLE},
            "next": "to-partner",
            "on_timeout": "coupon",
        },
        {
            "id": "to-partner",
            "type": "webhook",
            "url": "http://partner.example/ship",
            "body": {"item": "sample"},
            "next": "settle",
        },
        {"id": "settle", "type": "wait", "duration": "1d", "next": "vip-check"},
        {
            "id": "vip-check",
            "type": "branch",
            "branches": [
                {"when": {"field": "job_title", "op": "eq", "value": "部長"}, "next": "vip"}
            ],
        },
        {"id": "vip", "type": "add_to_list", "list": "vip"},
        {"id": "coupon", "type": "issue_coupon", "prefix": "SALE-", "next": "onsite"},
        {"id": "onsite", "type": "onsite_message", "message": "何かお困りのことはありませんか?"},
    ],
}


def journey_worker(engine: Engine, clock: FrozenClock, settings: Settings) -> Worker:
    """The worker with only the journey steps (the outbox is inspected, not delivered)."""
    return Worker(
        engine,
        clock,
        settings,
        contact_steps=[("journeys", journeys_contact_step)],
        periodic_steps=[("journeys", journeys_step)],
    )


def person(engine: Engine, clock: FrozenClock, email: str, **fields: Any) -> int:
    with engine.begin() as conn:
        return upsert_contact(
            conn, clock, email=email, changes=ContactChanges(**fields), source_kind="api"
        ).contact_id


def submit(engine: Engine, clock: FrozenClock, contact_id: int, form: str) -> None:
    with engine.begin() as conn:
        record_events(
            conn,
            clock,
            [NewEvent(type="form_submitted", occurred_at=clock.now(), source="form",
                      contact_id=contact_id, properties={"form": form})],
        )  # fmt: skip


def node_stats(admin: TestClient, key: str) -> dict[str, dict[str, Any]]:
    answer = admin.get(f"/api/journeys/{key}/stats")
    assert answer.status_code == 200, answer.text
    return {n["node"]: n for n in answer.json()["nodes"]}


def state_of(engine: Engine, contact_id: int) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(
            select(enrolments.c.node, enrolments.c.state).where(
                enrolments.c.contact_id == contact_id
            )
        ).one()
    return row.node, row.state


def webhooks(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            r.payload
            for r in conn.execute(select(outbox).where(outbox.c.kind == "webhook").order_by("id"))
        ]


def start(admin: TestClient, definition: dict[str, Any]) -> None:
    created = admin.post("/api/journeys", json=definition)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft"
    active = admin.post(f"/api/journeys/{definition['key']}/activate")
    assert active.status_code == 200, active.text


def test_sample_offer_plays_through_waits_branches_and_timeouts(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    assert admin.post("/api/lists", json={"slug": "vip", "name": "VIP"}).status_code == 201
    start(admin, SAMPLE_OFFER)
    worker = journey_worker(engine, clock, settings)
    bucho = person(engine, clock, "bucho@example.jp", job_title="部長")
    staff = person(engine, clock, "staff@example.jp", job_title="担当")
    other = person(engine, clock, "other@example.jp")
    buyer = person(engine, clock, "buyer@example.jp")
    for contact in (bucho, staff, buyer):
        submit(engine, clock, contact, "survey")
    submit(engine, clock, other, "contact-us")
    wait_until_idle(worker)
    assert state_of(engine, bucho) == ("wait-request", "waiting")
    assert state_of(engine, staff) == ("wait-request", "waiting")
    with engine.connect() as conn:
        assert "surveyed" in tags_of(conn, bucho)
        assert (
            conn.execute(
                select(func.count()).select_from(enrolments).where(enrolments.c.contact_id == other)
            ).scalar_one()
            == 0
        )

    # day 2: the bucho asks for the sample -> woken at once, sent to the partner
    clock.advance(timedelta(days=2))
    submit(engine, clock, bucho, "sample")
    wait_until_idle(worker)
    assert state_of(engine, bucho) == ("settle", "waiting")
    sent = webhooks(engine)
    assert [(p["url"], p["body"]["contact"]["id"], p["sign"]) for p in sent] == [
        ("http://partner.example/ship", bucho, True)
    ]
    assert sent[0]["body"]["item"] == "sample"

    # the buyer becomes a customer while waiting: the goal ends the enrolment promptly
    with engine.begin() as conn:
        add_tags(conn, clock, buyer, ["customer"])
    wait_until_idle(worker)
    assert state_of(engine, buyer) == ("wait-request", "converted")

    # day 3: the settle wait ends, the branch sends the bucho to the VIP list
    clock.advance(timedelta(days=1, minutes=1))
    wait_until_idle(worker)
    assert state_of(engine, bucho) == ("vip", "completed")
    assert admin.get(f"/api/contacts/{bucho}").json()["id"] == bucho
    members = admin.get("/api/lists/vip/members").json()["items"]
    assert [m["id"] for m in members] == [bucho]

    # day 7+: the staff member never asked: timeout -> coupon and on-site message
    assert state_of(engine, staff) == ("wait-request", "waiting")
    clock.advance(timedelta(days=5))
    wait_until_idle(worker)
    assert state_of(engine, staff) == ("onsite", "completed")
    coupons = admin.get(f"/api/contacts/{staff}/coupons").json()["items"]
    assert len(coupons) == 1
    assert coupons[0]["code"].startswith("SALE-")
    messages = admin.get(f"/api/contacts/{staff}/onsite-messages").json()["items"]
    assert [m["message"] for m in messages] == ["何かお困りのことはありませんか?"]

    stats = node_stats(admin, "sample-offer")
    assert stats["thanks"]["entered"] == 3
    assert stats["wait-request"]["entered"] == 3
    assert stats["wait-request"]["passed"] == 2
    assert stats["wait-request"]["converted"] == 1
    assert stats["to-partner"]["passed"] == 1
    assert stats["coupon"]["passed"] == 1
    assert stats["vip-check"]["passed"] == 1
    history = admin.get(f"/api/contacts/{staff}/journeys").json()["items"]
    assert [(s["node"], s["result"]) for s in history[0]["steps"]] == [
        ("thanks", "next"),
        ("wait-request", "waiting"),
        ("wait-request", "on_timeout"),
        ("coupon", "next"),
        ("onsite", "next"),
    ]
    # the timeout is recorded at the deadline, not when the worker got to it
    timeout = history[0]["steps"][2]
    assert datetime.fromisoformat(timeout["at"]) == datetime(2026, 11, 9, tzinfo=UTC)


def test_played_with_worker_once_now_chains_waits_from_their_due_time(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    definition = {
        "key": "drip",
        "name": "drip",
        "entry": {"triggers": [{"manual": True}]},
        "start": "w1",
        "nodes": [
            {"id": "w1", "type": "wait", "duration": "3d", "next": "t1"},
            {"id": "t1", "type": "add_tag", "tag": "day3", "next": "w2"},
            {"id": "w2", "type": "wait", "duration": "4d", "next": "t2"},
            {"id": "t2", "type": "add_tag", "tag": "day7"},
        ],
    }
    start(admin, definition)
    contact = person(engine, clock, "drip@example.jp")
    assert admin.post("/api/journeys/drip/enrolments", json={"contact_ids": [contact]}).json() == {
        "enrolled": [contact],
        "skipped": [],
    }
    worker = journey_worker(engine, clock, settings)
    wait_until_idle(worker)
    clock.advance(timedelta(days=10))  # the worker was away: both waits are over by now
    wait_until_idle(worker)
    with engine.connect() as conn:
        assert tags_of(conn, contact) == ["day3", "day7"]
    steps = admin.get(f"/api/contacts/{contact}/journeys").json()["items"][0]["steps"]
    at = {s["node"]: datetime.fromisoformat(s["at"]) for s in steps if s["result"] == "next"}
    assert at["t1"] - at["w1"] == timedelta(0)
    assert at["w2"] == datetime(2026, 11, 9, tzinfo=UTC)


def test_editing_a_live_journey_leaves_running_enrolments_on_their_version(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    def version(tag: str) -> dict[str, Any]:
        return {
            "key": "edit-me",
            "name": "edit me",
            "entry": {"triggers": [{"manual": True}]},
            "start": "w",
            "nodes": [
                {"id": "w", "type": "wait", "duration": "1d", "next": "t"},
                {"id": "t", "type": "add_tag", "tag": tag},
            ],
        }

    start(admin, version("first"))
    early = person(engine, clock, "early@example.jp")
    late = person(engine, clock, "late@example.jp")
    admin.post("/api/journeys/edit-me/enrolments", json={"contact_ids": [early]})
    worker = journey_worker(engine, clock, settings)
    wait_until_idle(worker)
    edited = admin.put("/api/journeys/edit-me", json=version("second"))
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2
    admin.post("/api/journeys/edit-me/enrolments", json={"contact_ids": [late]})
    clock.advance(timedelta(days=2))
    wait_until_idle(worker)
    with engine.connect() as conn:
        assert tags_of(conn, early) == ["first"]
        assert tags_of(conn, late) == ["second"]
    history = admin.get(f"/api/contacts/{early}/journeys").json()["items"]
    assert history[0]["version"] == 1


@pytest.mark.parametrize(("reentry", "expected"), [("never", 1), ("after_exit", 2), ("always", 3)])
def test_reentry_policy_decides_how_often_an_event_enrols(
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin: TestClient,
    reentry: str,
    expected: int,
) -> None:
    start(
        admin,
        {
            "key": "again",
            "name": "again",
            "entry": {
                "triggers": [{"event": "form_submitted", "where": SURVEY}],
                "reentry": reentry,
            },
            "start": "w",
            "nodes": [{"id": "w", "type": "wait", "duration": "1h"}],
        },
    )
    contact = person(engine, clock, "again@example.jp")
    worker = journey_worker(engine, clock, settings)
    submit(engine, clock, contact, "survey")
    wait_until_idle(worker)
    submit(engine, clock, contact, "survey")  # while the first enrolment still waits
    wait_until_idle(worker)
    clock.advance(timedelta(hours=2))
    wait_until_idle(worker)  # the first one(s) end
    wait_until_idle(worker)  # nothing already seen enrols again
    clock.advance(timedelta(minutes=1))
    submit(engine, clock, contact, "survey")  # after the exit
    wait_until_idle(worker)
    with engine.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(enrolments).where(enrolments.c.contact_id == contact)
        ).scalar_one()
    assert count == expected


def test_segment_entry_enrols_and_entry_limit_caps(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    segment = {
        "slug": "buchos",
        "name": "部長",
        "filter": {"field": "job_title", "op": "eq", "value": "部長"},
    }
    assert admin.post("/api/segments", json=segment).status_code == 201
    start(
        admin,
        {
            "key": "welcome-bucho",
            "name": "welcome",
            "entry": {"triggers": [{"segment_entered": "buchos"}], "limit": 2},
            "start": "t",
            "nodes": [{"id": "t", "type": "add_tag", "tag": "welcomed"}],
        },
    )
    worker = journey_worker(engine, clock, settings)
    ids = [person(engine, clock, f"b{i}@example.jp", job_title="部長") for i in range(3)]
    plain = person(engine, clock, "plain@example.jp", job_title="担当")
    wait_until_idle(worker)
    with engine.connect() as conn:
        welcomed = [c for c in [*ids, plain] if "welcomed" in tags_of(conn, c)]
    assert len(welcomed) == 2
    assert plain not in welcomed
    assert admin.get("/api/journeys/welcome-bucho/stats").json()["completed"] == 2


def test_random_split_is_deterministic_and_uses_every_path(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    start(
        admin,
        {
            "key": "ab",
            "name": "ab",
            "entry": {"triggers": [{"manual": True}]},
            "start": "s",
            "nodes": [
                {
                    "id": "s",
                    "type": "split",
                    "paths": [{"weight": 1, "next": "a"}, {"weight": 1, "next": "b"}],
                },
                {"id": "a", "type": "add_tag", "tag": "a"},
                {"id": "b", "type": "add_tag", "tag": "b"},
            ],
        },
    )
    ids = [person(engine, clock, f"ab{i}@example.jp") for i in range(60)]
    admin.post("/api/journeys/ab/enrolments", json={"contact_ids": ids})
    wait_until_idle(journey_worker(engine, clock, settings))
    stats = node_stats(admin, "ab")
    assert stats["a"]["passed"] + stats["b"]["passed"] == 60
    assert 10 < stats["a"]["passed"] < 50


def test_wait_until_window_moves_to_the_next_weekday_opening() -> None:
    from zoneinfo import ZoneInfo

    node = WaitUntil.model_validate(
        {"id": "w", "type": "wait_until", "weekdays": ["mon", "tue", "wed", "thu", "fri"],
         "between": "09:00-18:00"}
    )  # fmt: skip
    tokyo = ZoneInfo("Asia/Tokyo")
    saturday_noon = datetime(2026, 11, 7, 12, 0, tzinfo=tokyo)
    assert next_in_window(saturday_noon, node, tokyo) == datetime(2026, 11, 9, 9, 0, tzinfo=tokyo)
    tuesday_ten = datetime(2026, 11, 10, 10, 0, tzinfo=tokyo)
    assert next_in_window(tuesday_ten, node, tokyo) == tuesday_ten
    tuesday_night = datetime(2026, 11, 10, 19, 0, tzinfo=tokyo)
    assert next_in_window(tuesday_night, node, tokyo) == datetime(2026, 11, 11, 9, 0, tzinfo=tokyo)


def test_enrolling_a_missing_contact_is_refused_naming_it(
    engine: Engine, clock: FrozenClock, admin: TestClient, stored: Any
) -> None:
    start(
        admin,
        {
            "key": "m",
            "name": "m",
            "entry": {"triggers": [{"manual": True}]},
            "start": "t",
            "nodes": [{"id": "t", "type": "add_tag", "tag": "x"}],
        },
    )
    real = person(engine, clock, "real@example.jp")
    before = stored()
    answer = admin.post("/api/journeys/m/enrolments", json={"contact_ids": [real, 424242]})
    assert answer.status_code == 422
    assert "424242" in answer.json()["error"]["message"]
    assert stored() == before


def test_activation_is_refused_for_a_step_this_build_cannot_run(
    admin: TestClient, monkeypatch: Any
) -> None:
    from ekiden.journeys.actions import ACTIONS
    from ekiden.scoring.examples import BEHAVIOUR

    monkeypatch.delitem(ACTIONS, "adjust_score")  # a build without that step

    assert admin.post("/api/scores", json=BEHAVIOUR).status_code == 201
    definition = {
        "key": "bonus",
        "name": "bonus",
        "entry": {"triggers": [{"manual": True}]},
        "start": "n",
        "nodes": [{"id": "n", "type": "adjust_score", "score": "behaviour", "points": 5}],
    }
    assert admin.post("/api/journeys", json=definition).status_code == 201
    answer = admin.post("/api/journeys/bonus/activate")
    assert answer.status_code == 422
    assert (
        "nodes[0] (n): the adjust_score step is not available yet"
        in answer.json()["error"]["message"]
    )
    assert admin.get("/api/journeys/bonus").json()["status"] == "draft"


def test_date_trigger_enrols_days_after_a_contact_date(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    field = {"key": "sample_delivered_at", "label": "サンプル到着", "type": "datetime"}
    assert admin.post("/api/custom-fields", json=field).status_code == 201
    definition = {
        "key": "after-delivery",
        "name": "after delivery",
        "entry": {"triggers": [{"date_field": "custom.sample_delivered_at", "offset": "3d"}]},
        "start": "t",
        "nodes": [{"id": "t", "type": "add_tag", "tag": "call-now"}],
    }
    bad = {**definition, "entry": {"triggers": [{"date_field": "custom.nothing"}]}}
    answer = admin.post("/api/journeys", json=bad)
    assert answer.status_code == 422
    assert "custom.nothing" in answer.json()["error"]["message"]
    start(admin, definition)
    first = person(engine, clock, "first@example.jp")
    second = person(engine, clock, "second@example.jp")
    for contact, days in ((first, 0), (second, 2)):
        moment = (clock.now() + timedelta(days=days)).isoformat()
        changed = admin.patch(
            f"/api/contacts/{contact}", json={"custom": {"sample_delivered_at": moment}}
        )
        assert changed.status_code == 200, changed.text
    worker = journey_worker(engine, clock, settings)
    clock.advance(timedelta(days=3, minutes=1))
    wait_until_idle(worker)
    with engine.connect() as conn:
        assert tags_of(conn, first) == ["call-now"]
        assert tags_of(conn, second) == []
    clock.advance(timedelta(days=2))
    wait_until_idle(worker)
    wait_until_idle(worker)
    with engine.connect() as conn:
        assert tags_of(conn, second) == ["call-now"]
    assert admin.get("/api/journeys/after-delivery/stats").json()["enrolled"] == 2


def test_stage_and_score_triggers_enrol_when_crossed(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    from ekiden.scoring.examples import BEHAVIOUR
    from ekiden.worker import default_contact_steps

    assert admin.post("/api/scores", json=BEHAVIOUR).status_code == 201
    for key, trigger in (
        ("on-hot", {"stage_reached": "hot"}),
        ("on-score", {"score_crossed": "behaviour", "at_least": 3}),
    ):
        start(
            admin,
            {
                "key": key,
                "name": key,
                "entry": {"triggers": [trigger]},
                "start": "t",
                "nodes": [{"id": "t", "type": "add_tag", "tag": key}],
            },
        )
    worker = Worker(
        engine,
        clock,
        settings,
        contact_steps=default_contact_steps(),
        periodic_steps=[("journeys", journeys_step)],
    )
    lead = person(engine, clock, "hot@example.jp")
    wait_until_idle(worker)
    moved = admin.post(f"/api/contacts/{lead}/stage", json={"stage": "hot"})
    assert moved.status_code in (200, 201), moved.text
    submit(engine, clock, lead, "webinar")  # 3 points: from 0 to 3
    wait_until_idle(worker)
    with engine.connect() as conn:
        assert tags_of(conn, lead) == ["on-hot", "on-score"]
    submit(engine, clock, lead, "webinar")  # 6: no new crossing
    wait_until_idle(worker)
    assert admin.get("/api/journeys/on-score/stats").json()["enrolled"] == 1


def test_invalid_definitions_and_missing_references_are_refused(admin: TestClient) -> None:
    bad = {**SAMPLE_OFFER, "key": "broken"}
    answer = admin.post("/api/journeys", json=bad)
    assert answer.status_code == 422
    assert "no list 'vip'" in answer.json()["error"]["message"]
    dangling = {
        **SAMPLE_OFFER,
        "nodes": [{"id": "thanks", "type": "add_tag", "tag": "x", "next": "nowhere"}],
    }
    answer = admin.post("/api/journeys", json=dangling)
    assert answer.status_code == 422
    assert "no node 'nowhere'" in answer.json()["error"]["message"]
    assert admin.get("/api/journeys").json()["items"] == []


def test_pause_holds_enrolments_and_archive_ends_them(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    start(
        admin,
        {
            "key": "p",
            "name": "p",
            "entry": {"triggers": [{"manual": True}]},
            "start": "w",
            "nodes": [
                {"id": "w", "type": "wait", "duration": "1d", "next": "t"},
                {"id": "t", "type": "add_tag", "tag": "done"},
            ],
        },
    )
    contact = person(engine, clock, "p@example.jp")
    admin.post("/api/journeys/p/enrolments", json={"contact_ids": [contact]})
    worker = journey_worker(engine, clock, settings)
    wait_until_idle(worker)
    assert admin.post("/api/journeys/p/pause").json()["status"] == "paused"
    clock.advance(timedelta(days=2))
    wait_until_idle(worker)
    assert state_of(engine, contact) == ("w", "waiting")
    assert admin.post("/api/journeys/p/resume").json()["status"] == "active"
    wait_until_idle(worker)
    assert state_of(engine, contact) == ("t", "completed")
    other = person(engine, clock, "q@example.jp")
    admin.post("/api/journeys/p/enrolments", json={"contact_ids": [other]})
    assert admin.post("/api/journeys/p/archive").json()["status"] == "archived"
    assert state_of(engine, other) == ("w", "exited")
    assert (
        admin.post("/api/journeys/p/enrolments", json={"contact_ids": [other]}).status_code == 409
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/journeys"),
        ("put", "/api/journeys/x"),
        ("post", "/api/journeys/x/activate"),
        ("post", "/api/journeys/x/pause"),
        ("post", "/api/journeys/x/resume"),
        ("post", "/api/journeys/x/archive"),
        ("post", "/api/journeys/x/enrolments"),
        ("get", "/api/journeys/x/stats"),
        ("get", "/api/contacts/1/journeys"),
    ],
)
def test_journey_endpoints_need_an_admin_key(
    client: TestClient, ingest_key: str, method: str, path: str
) -> None:
    assert client.request(method, path, json={}).status_code == 401
    answer = client.request(
        method, path, json={}, headers={"Authorization": f"Bearer {ingest_key}"}
    )
    assert answer.status_code == 403


def test_cli_loads_activates_enrols_and_reports(
    engine: Engine, clock: FrozenClock, settings: Settings, tmp_path: Any, monkeypatch: Any
) -> None:
    import yaml

    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    definition = {
        "key": "cli",
        "name": "cli",
        "entry": {"triggers": [{"manual": True}]},
        "start": "t",
        "nodes": [{"id": "t", "type": "add_tag", "tag": "from-cli"}],
    }
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(definition, allow_unicode=True), encoding="utf-8")
    contact = person(engine, clock, "cli@example.jp")
    runner = CliRunner()
    for args in (
        ["journeys", "load", str(path)],
        ["journeys", "activate", "cli"],
        ["journeys", "enrol", "cli", "--contact", str(contact)],
    ):
        result = runner.invoke(cli_app, args)
        assert result.exit_code == 0, result.output
    missing = runner.invoke(cli_app, ["journeys", "enrol", "cli", "--contact", "999999"])
    assert missing.exit_code == 1
    assert "999999" in missing.output
    wait_until_idle(journey_worker(engine, clock, settings))
    stats = runner.invoke(cli_app, ["journeys", "stats", "cli"])
    assert stats.exit_code == 0, stats.output
    assert "登録 1 件" in stats.output  # the default locale is ja
    listed = runner.invoke(cli_app, ["journeys", "list"])
    assert "cli" in listed.output


def test_a_stored_definition_reads_back_as_the_same_journey(admin: TestClient) -> None:
    from ekiden.journeys.definition import parse_journey

    definition = {
        "key": "round-trip",
        "name": "round trip",
        "entry": {"triggers": [{"manual": True}], "reentry": "after_exit"},
        "exit_when": {"not": {"tag": "keep"}},
        "frequency_cap": {"emails": 2, "per": "7d"},
        "start": "w",
        "nodes": [
            {"id": "w", "type": "wait_until", "weekdays": ["mon", "fri"], "between": "22:00-06:00",
             "next": "f"},
            {"id": "f", "type": "wait_for", "timeout": "36h", "on_timeout": "x",
             "condition": {"field": "job_title", "op": "eq", "value": "部長"}},
            {"id": "x", "type": "exit"},
        ],
    }  # fmt: skip
    assert admin.post("/api/journeys", json=definition).status_code == 201
    stored = admin.get("/api/journeys/round-trip").json()["definition"]
    assert parse_journey(stored) == parse_journey(definition)


def test_page_visit_trigger_and_the_remaining_actions(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    start(
        admin,
        {
            "key": "follow-up",
            "name": "follow up",
            "entry": {"triggers": [{"manual": True}]},
            "start": "t",
            "nodes": [{"id": "t", "type": "add_tag", "tag": "followed-up"}],
        },
    )
    start(
        admin,
        {
            "key": "pricing",
            "name": "pricing visitors",
            "entry": {
                "triggers": [
                    {"event": "page",
                     "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}]}
                ],
                "reentry": "always",
            },
            "start": "field",
            "nodes": [
                {"id": "field", "type": "update_field", "field": "company",
                 "value": "株式会社テスト", "next": "untag"},
                {"id": "untag", "type": "remove_tag", "tag": "cold", "next": "coupon"},
                {"id": "coupon", "type": "issue_coupon", "next": "hand-over"},
                {"id": "hand-over", "type": "enrol", "journey": "follow-up", "next": "out"},
                {"id": "out", "type": "exit"},
            ],
        },
    )  # fmt: skip
    contact = person(engine, clock, "visitor@example.jp")
    with engine.begin() as conn:
        add_tags(conn, clock, contact, ["cold"])
    worker = journey_worker(engine, clock, settings)
    for path in ("/pricing/enterprise", "/about", "/pricing"):
        with engine.begin() as conn:
            record_events(
                conn,
                clock,
                [NewEvent(type="page", occurred_at=clock.now(), source="browser",
                          contact_id=contact, path=path)],
            )  # fmt: skip
        wait_until_idle(worker)
    states = admin.get(f"/api/contacts/{contact}/journeys").json()["items"]
    assert sorted((e["journey"], e["state"]) for e in states) == [
        ("follow-up", "completed"),
        ("pricing", "exited"),
        ("pricing", "exited"),
    ]
    body = admin.get(f"/api/contacts/{contact}").json()
    assert body["company"] == "株式会社テスト"
    assert body["tags"] == ["followed-up"]
    coupons = admin.get(f"/api/contacts/{contact}/coupons").json()["items"]
    assert len(coupons) == 1  # one code per contact and journey, however often they enter
    assert coupons[0]["field"] == "coupon_code"
    stats = node_stats(admin, "pricing")
    assert stats["out"]["exited"] == 2
    assert stats["coupon"]["passed"] == 2


def test_wait_for_a_condition_wakes_on_the_change_and_wait_until_follows_a_date(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    field = {"key": "seminar_on", "label": "セミナー日", "type": "date"}
    assert admin.post("/api/custom-fields", json=field).status_code == 201
    start(
        admin,
        {
            "key": "promoted",
            "name": "promoted",
            "entry": {"triggers": [{"manual": True}]},
            "start": "until-bucho",
            "nodes": [
                {"id": "until-bucho", "type": "wait_for", "timeout": "30d", "next": "seminar",
                 "condition": {"field": "job_title", "op": "eq", "value": "部長"}},
                {"id": "seminar", "type": "wait_until", "date_field": "custom.seminar_on",
                 "offset": "9h", "next": "remind"},
                {"id": "remind", "type": "add_tag", "tag": "reminded"},
            ],
        },
    )  # fmt: skip
    contact = person(engine, clock, "promoted@example.jp", job_title="課長")
    admin.post("/api/journeys/promoted/enrolments", json={"contact_ids": [contact]})
    worker = journey_worker(engine, clock, settings)
    wait_until_idle(worker)
    clock.advance(timedelta(days=1))
    changed = admin.patch(
        f"/api/contacts/{contact}",
        json={"job_title": "部長", "custom": {"seminar_on": "2026-11-10"}},
    )
    assert changed.status_code == 200, changed.text
    wait_until_idle(worker)  # the change wakes the wait at once
    assert state_of(engine, contact) == ("seminar", "waiting")
    with engine.connect() as conn:
        due = conn.execute(select(enrolments.c.due_at)).scalar_one()
    # 2026-11-10 00:00 in Tokyo plus 9 hours is 09:00 JST, i.e. 00:00 UTC
    assert due == datetime(2026, 11, 10, 0, 0, tzinfo=UTC)
    clock.set(due + timedelta(minutes=1))
    wait_until_idle(worker)
    assert state_of(engine, contact) == ("remind", "completed")


def test_a_merge_moves_journeys_to_the_winner_without_doubling_them(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    for key in ("once", "other"):
        start(
            admin,
            {
                "key": key,
                "name": key,
                "entry": {"triggers": [{"manual": True}]},
                "start": "c",
                "nodes": [
                    {"id": "c", "type": "issue_coupon", "next": "w"},
                    {"id": "w", "type": "wait", "duration": "1d", "next": "t"},
                    {"id": "t", "type": "add_tag", "tag": f"{key}-done"},
                ],
            },
        )
    winner = person(engine, clock, "winner@example.jp")
    loser = person(engine, clock, "loser@example.jp")
    admin.post("/api/journeys/once/enrolments", json={"contact_ids": [winner, loser]})
    admin.post("/api/journeys/other/enrolments", json={"contact_ids": [loser]})
    worker = journey_worker(engine, clock, settings)
    wait_until_idle(worker)
    loser_codes = {
        c["journey"]: c["code"] for c in admin.get(f"/api/contacts/{loser}/coupons").json()["items"]
    }
    merged = admin.post("/api/contacts/merge", json={"winner_id": winner, "loser_id": loser})
    assert merged.status_code == 200, merged.text
    assert merged.json()["moved"]["enrolments"] == 2
    history = admin.get(f"/api/contacts/{winner}/journeys").json()["items"]
    assert sorted((e["journey"], e["state"]) for e in history) == [
        ("once", "exited"),  # the loser's duplicate: the winner's own enrolment goes on
        ("once", "waiting"),
        ("other", "waiting"),
    ]
    codes = admin.get(f"/api/contacts/{winner}/coupons").json()["items"]
    assert {c["journey"] for c in codes} == {"once", "other"}
    assert loser_codes["other"] in {c["code"] for c in codes}
    clock.advance(timedelta(days=2))
    wait_until_idle(worker)
    with engine.connect() as conn:
        assert tags_of(conn, winner) == ["once-done", "other-done"]
    assert admin.get("/api/journeys/once/stats").json()["completed"] == 1
