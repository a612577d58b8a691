"""Dry-run: a journey replayed against the last N days of history, counted per node, edge and
email by hand, with nothing written; and the errors for bad input."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tags import add_tags
from ekiden.tracking.events import NewEvent, record_events
from test_journeys import person

SURVEY = [{"property": "form", "op": "eq", "value": "survey"}]
SAMPLE = [{"property": "form", "op": "eq", "value": "sample"}]

JOURNEY: dict[str, Any] = {
    "key": "sim",
    "name": "dry-run",
    "entry": {"triggers": [{"event": "form_submitted", "where": SURVEY}], "reentry": "never"},
    "goal": {"tag": "customer"},
    "start": "thanks",
    "nodes": [
        {"id": "thanks", "type": "send_email", "email": "sample-offer", "next": "wait-request"},
        {
            "id": "wait-request",
            "type": "wait_for",
            "timeout": "7d",
            "event": {"event": "form_submitted", "where": SAMPLE},
            "next": "ask-branch",
            "on_timeout": "sale",
        },
        {
            "id": "ask-branch",
            "type": "branch",
            "branches": [
                {"when": {"field": "job_title", "op": "eq", "value": "部長"}, "next": "vip-tag"}
            ],
            "otherwise": "done-tag",
        },
        {"id": "vip-tag", "type": "add_tag", "tag": "vip"},
        {"id": "done-tag", "type": "add_tag", "tag": "asked"},
        {"id": "sale", "type": "send_email", "email": "sale-announcement", "next": "opened-wait"},
        {
            "id": "opened-wait",
            "type": "wait_for",
            "timeout": "2d",
            "event": {
                "event": "email_opened",
                "where": [{"property": "email", "op": "eq", "value": "sale-announcement"}],
            },
            "next": "opened-tag",
        },
        {"id": "opened-tag", "type": "add_tag", "tag": "opened"},
    ],
}


def happened(engine: Engine, clock: FrozenClock, contact: int, kind: str, at: datetime,
             **props: Any) -> None:  # fmt: skip
    event = NewEvent(type=kind, occurred_at=at, source="api", contact_id=contact,
                     path=props.pop("path", None), properties=props)  # fmt: skip
    with engine.begin() as conn:
        record_events(conn, clock, [event])


@pytest.fixture
def history(engine: Engine, clock: FrozenClock, admin: TestClient) -> dict[str, int]:
    """Twenty days of history (T0 = now - 20 days), see each contact's comment."""
    for key in ("sample-offer", "sale-announcement"):
        template = {"key": key, "name": key, "subject": key, "html": "<p>x</p>"}
        assert admin.post("/api/emails", json=template).status_code == 201
    t0 = clock.now() - timedelta(days=20)
    who = {
        name: person(engine, clock, f"{name}@example.jp", **fields)
        for name, fields in (
            ("a", {"job_title": "部長"}),
            ("b", {}),
            ("c", {}),
            ("d", {}),
            ("e", {}),
            ("f", {}),
            ("g", {}),
        )
    }
    day = timedelta(days=1)
    # a: survey, asks for the sample 2 days later, is a 部長 -> the vip branch
    happened(engine, clock, who["a"], "form_submitted", t0, form="survey")
    happened(engine, clock, who["a"], "form_submitted", t0 + 2 * day, form="sample")
    # b: asks only after the 7-day wait -> sale email, no open of it -> the end (timeout)
    happened(engine, clock, who["b"], "form_submitted", t0 + day, form="survey")
    happened(engine, clock, who["b"], "form_submitted", t0 + 10 * day, form="sample")
    # c: answers twice (never re-enters), never asks; really opened a sale-announcement
    # mail half a day into the 2-day wait -> opened-tag
    happened(engine, clock, who["c"], "form_submitted", t0, form="survey")
    happened(engine, clock, who["c"], "form_submitted", t0 + 3 * day, form="survey")
    happened(engine, clock, who["c"], "email_opened", t0 + 7.5 * day, email="sale-announcement")
    # d: answered 2 days ago -> still waiting for the request now
    happened(engine, clock, who["d"], "form_submitted", t0 + 18 * day, form="survey")
    # e: answered 40 days ago -> outside a 30-day window
    happened(engine, clock, who["e"], "form_submitted", t0 - 20 * day, form="survey")
    # f: already a customer (the goal) -> converted before the first node
    happened(engine, clock, who["f"], "form_submitted", t0 + 5 * day, form="survey")
    with engine.begin() as conn:
        add_tags(conn, clock, who["f"], ["customer"])
    # g: another form
    happened(engine, clock, who["g"], "form_submitted", t0 + day, form="newsletter")
    return who


def simulated(admin: TestClient, **body: Any) -> dict[str, Any]:
    answer = admin.post("/api/journeys/simulate", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def by_node(result: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """node -> (entered, passed, waiting, exited, converted)."""
    return {
        n["node"]: (n["entered"], n["passed"], n["waiting"], n["exited"], n["converted"])
        for n in result["nodes"]
    }


def by_edge(result: dict[str, Any]) -> dict[tuple[str, str, str | None], int]:
    return {(e["source"], e["port"], e["target"]): e["count"] for e in result["edges"]}


def test_a_draft_replayed_over_30_days_counts_nodes_edges_and_emails(
    history: dict[str, int],
    admin: TestClient,
    stored: Callable[[], dict[str, list[tuple[object, ...]]]],
) -> None:
    before = stored()
    result = simulated(admin, definition=JOURNEY, days=30)
    assert stored() == before  # nothing written: no enrolment, no outbox row, no message
    assert (result["journey"], result["version"], result["days"]) == ("sim", None, 30)
    assert (result["facts"], result["entered"], result["enrolments"]) == (6, 5, 5)
    assert (result["skipped_reentry"], result["skipped_condition"]) == (1, 0)
    assert by_node(result) == {
        "thanks": (5, 4, 0, 0, 1),  # a b c d, and f converted (a customer already)
        "wait-request": (4, 3, 1, 0, 0),  # d is still waiting now
        "ask-branch": (1, 1, 0, 0, 0),
        "vip-tag": (1, 1, 0, 0, 0),
        "done-tag": (0, 0, 0, 0, 0),
        "sale": (2, 2, 0, 0, 0),
        "opened-wait": (2, 2, 0, 0, 0),
        "opened-tag": (1, 1, 0, 0, 0),
    }
    assert by_edge(result) == {
        ("thanks", "next", "wait-request"): 4,
        ("wait-request", "next", "ask-branch"): 1,
        ("wait-request", "on_timeout", "sale"): 2,
        ("ask-branch", "branches[0]", "vip-tag"): 1,
        ("ask-branch", "otherwise", "done-tag"): 0,
        ("vip-tag", "next", None): 1,
        ("sale", "next", "opened-wait"): 2,
        ("opened-wait", "next", "opened-tag"): 1,  # c's real open
        ("opened-wait", "on_timeout", None): 1,  # b: the simulated email is never opened
        ("opened-tag", "next", None): 1,
    }
    assert result["emails"] == [
        {"email": "sale-announcement", "count": 2, "contacts": 2},
        {"email": "sample-offer", "count": 4, "contacts": 4},
    ]
    assert result["outcomes"] == {"completed": 3, "exited": 0, "converted": 1, "waiting": 1}
    flagged = {n["node"] for n in result["nodes"] if n["depends_on_email_events"]}
    assert flagged == {"opened-wait"}
    assert "simulated_emails_unopened" in result["assumptions"]
    assert "horizon" in result["assumptions"]

    # a shorter window: only d (2 days ago) is inside 3 days
    short = simulated(admin, definition=JOURNEY, days=3)
    assert (short["facts"], short["entered"]) == (1, 1)
    assert short["outcomes"]["waiting"] == 1

    # played out: d's wait times out, the sale mail goes, its open never comes
    played = simulated(admin, definition=JOURNEY, days=30, play_out=True)
    assert played["outcomes"] == {"completed": 4, "exited": 0, "converted": 1, "waiting": 0}
    assert by_edge(played)[("wait-request", "on_timeout", "sale")] == 3
    assert stored() == before


def test_a_saved_journey_and_the_cli_give_the_same_counts(
    history: dict[str, int],
    clock: FrozenClock,
    admin: TestClient,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: Any,
    stored: Callable[[], dict[str, list[tuple[object, ...]]]],
) -> None:
    assert admin.post("/api/journeys", json=JOURNEY).status_code == 201
    draft = simulated(admin, definition=JOURNEY, days=30)
    saved = simulated(admin, journey="sim", days=30)
    assert saved["version"] == 1
    assert by_node(saved) == by_node(draft)
    assert by_edge(saved) == by_edge(draft)

    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COLUMNS", "160")
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(JOURNEY, allow_unicode=True), encoding="utf-8")
    before = stored()
    now = clock.now().isoformat()
    result = CliRunner().invoke(
        cli_app, ["journeys", "simulate", str(path), "--days", "30", "--now", now]
    )
    assert result.exit_code == 0, result.output
    assert stored() == before
    rows = {
        cells[0]: cells[1:]
        for line in result.output.splitlines()
        if len(cells := [c.strip() for c in line.split("│")[1:-1]]) == 8
    }
    assert rows["thanks"] == ["send_email", "5", "4", "0", "0", "1", "sample-offer"]
    assert rows["wait-request"][:4] == ["wait_for", "4", "3", "1"]
    assert rows["opened-wait *"][:3] == ["wait_for", "2", "2"]  # * : depends on email events
    assert "送信されていません" in result.output  # the assumptions, in the default locale


def test_frequency_cap_entry_condition_and_limit_are_replayed(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    template = {"key": "m", "name": "m", "subject": "m", "html": "<p>x</p>"}
    assert admin.post("/api/emails", json=template).status_code == 201
    definition = {
        "key": "capped",
        "name": "capped",
        "entry": {
            "triggers": [{"event": "signup"}],
            "reentry": "always",
            "when": {"field": "company", "op": "is_set"},
            "limit": 3,
        },
        "frequency_cap": {"emails": 1, "per": "7d"},
        "start": "mail",
        "nodes": [{"id": "mail", "type": "send_email", "email": "m"}],
    }
    with_company = person(engine, clock, "x@example.jp", company="ACME")
    without = person(engine, clock, "y@example.jp")
    now = clock.now()
    for hours in (100, 90, 10):  # three signups: the 2nd within 7 days of the 1st is capped
        happened(engine, clock, with_company, "signup", now - timedelta(hours=hours))
    happened(engine, clock, without, "signup", now - timedelta(hours=50))
    happened(engine, clock, with_company, "signup", now - timedelta(hours=5))  # over the limit
    result = simulated(admin, definition=definition, days=30)
    assert (result["facts"], result["enrolments"], result["entered"]) == (5, 3, 1)
    assert (result["skipped_condition"], result["skipped_limit"]) == (1, 1)
    [mail] = result["nodes"]
    assert (mail["entered"], mail["passed"], mail["capped"]) == (3, 3, 2)
    assert result["emails"] == [{"email": "m", "count": 1, "contacts": 1}]


def test_bad_input_is_refused_naming_the_part(
    admin: TestClient, settings: Settings, tmp_path: Path, monkeypatch: Any
) -> None:
    broken = {**JOURNEY, "nodes": [*JOURNEY["nodes"][:1]]}  # wait-request is gone
    answer = admin.post("/api/journeys/simulate", json={"definition": broken, "days": 7})
    assert answer.status_code == 422
    assert "nodes[0] (thanks).next: no node 'wait-request'" in answer.json()["error"]["message"]

    # templates are checked as when saving (none exists here)
    answer = admin.post("/api/journeys/simulate", json={"definition": JOURNEY, "days": 7})
    assert answer.status_code == 422
    assert "nodes[0] (thanks).email: no email template 'sample-offer'" in answer.text

    for body in ({"definition": JOURNEY, "days": 0}, {"definition": JOURNEY, "days": 400}):
        answer = admin.post("/api/journeys/simulate", json=body)
        assert answer.status_code == 422, answer.text
        assert "days" in answer.text
    answer = admin.post("/api/journeys/simulate", json={"days": 7})
    assert answer.status_code == 422
    assert "either a journey definition" in answer.text
    answer = admin.post("/api/journeys/simulate", json={"definition": JOURNEY, "journey": "x"})
    assert answer.status_code == 422
    answer = admin.post("/api/journeys/simulate", json={"journey": "nope", "days": 7})
    assert answer.status_code == 404
    assert "nope" in answer.text
    assert admin.post("/api/journeys/simulate", json={"definition": "[1, 2"}).status_code == 422

    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = CliRunner().invoke(cli_app, ["journeys", "simulate", str(path)])
    assert result.exit_code == 1
    assert "no node 'wait-request'" in result.output
    result = CliRunner().invoke(cli_app, ["journeys", "simulate", str(path), "--days", "0"])
    assert result.exit_code == 1
    assert "days" in result.output
    result = CliRunner().invoke(cli_app, ["journeys", "simulate"])
    assert result.exit_code == 1
    assert "--journey" in result.output


def test_after_exit_goals_during_waits_conditions_dates_and_time_windows(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    now = clock.now()  # Monday 2026-11-02 09:00 in Tokyo
    day = timedelta(days=1)
    pricing = {"event": "page", "where": [{"property": "path", "op": "starts_with",
                                           "value": "/pricing"}]}  # fmt: skip
    waits = {
        "key": "waits",
        "name": "waits",
        "entry": {"triggers": [{"event": "signup"}], "reentry": "after_exit"},
        "goal": {"event": "purchase"},
        "start": "w",
        "nodes": [
            {"id": "w", "type": "wait_for", "condition": pricing, "timeout": "3d", "next": "t"},
            {"id": "t", "type": "add_tag", "tag": "saw-pricing"},
        ],
    }
    p, q, r = (person(engine, clock, f"{n}@example.jp") for n in "pqr")
    # p: pricing a day after signing up -> passes; signs up again after that enrolment ended
    # and, having seen pricing already, passes at once
    happened(engine, clock, p, "signup", now - 20 * day)
    happened(engine, clock, p, "page", now - 19 * day, path="/pricing/plans")
    happened(engine, clock, p, "signup", now - 18 * day)
    # q: a second signup while the first enrolment waits (kept out), a purchase during the
    # wait (the goal: converted there), a later signup converts at once
    happened(engine, clock, q, "signup", now - 20 * day)
    happened(engine, clock, q, "signup", now - 19 * day)
    happened(engine, clock, q, "purchase", now - 18 * day)
    happened(engine, clock, q, "signup", now - 10 * day)
    # r: nothing within the 3 days -> times out, the journey ends
    happened(engine, clock, r, "signup", now - 5 * day)
    result = simulated(admin, definition=waits, days=30)
    assert (result["facts"], result["enrolments"], result["entered"]) == (6, 5, 3)
    assert result["skipped_reentry"] == 1
    assert by_node(result) == {"w": (5, 3, 0, 0, 2), "t": (2, 2, 0, 0, 0)}
    assert by_edge(result) == {
        ("w", "next", "t"): 2,
        ("w", "on_timeout", None): 1,
        ("t", "next", None): 2,
    }
    assert result["outcomes"] == {"completed": 3, "exited": 0, "converted": 2, "waiting": 0}

    # a date trigger (3 days after a custom date) and a Friday 10:00-11:00 window (Tokyo)
    field = {"key": "delivered_on", "label": "到着日", "type": "date"}
    assert admin.post("/api/custom-fields", json=field).status_code == 201
    dated = {
        "key": "dated",
        "name": "dated",
        "entry": {"triggers": [{"date_field": "custom.delivered_on", "offset": "3d"}]},
        "start": "friday",
        "nodes": [
            {"id": "friday", "type": "wait_until", "weekdays": ["fri"], "between": "10:00-11:00",
             "next": "done"},
            {"id": "done", "type": "add_tag", "tag": "done"},
        ],
    }  # fmt: skip
    # delivered Tue 10-27 -> Fri 10-30 00:00 -> that Friday 10:00: passed before now
    person(engine, clock, "early@example.jp", custom={"delivered_on": "2026-10-27"})
    # delivered Wed 10-28 -> Sat 10-31 -> next Friday 11-06 10:00: after now, waiting
    person(engine, clock, "late@example.jp", custom={"delivered_on": "2026-10-28"})
    # delivered 40 days ago -> outside the window; no date -> no fact
    person(engine, clock, "old@example.jp", custom={"delivered_on": "2026-09-20"})
    person(engine, clock, "none@example.jp")
    result = simulated(admin, definition=dated, days=30)
    assert (result["facts"], result["entered"]) == (2, 2)
    assert by_node(result) == {"friday": (2, 1, 1, 0, 0), "done": (1, 1, 0, 0, 0)}
    played = simulated(admin, definition=dated, days=30, play_out=True)
    assert by_node(played)["done"] == (2, 2, 0, 0, 0)


def test_contacts_are_read_in_bulk_as_the_engine_reads_one(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    from ekiden.journeys.simulate import load_contacts
    from ekiden.rules.loader import load_contact_data

    assert admin.post("/api/lists", json={"slug": "vip", "name": "VIP"}).status_code == 201
    one = person(engine, clock, "one@example.jp", company="ACME", job_title="部長")
    two = person(engine, clock, "two@example.jp")
    assert admin.post("/api/lists/vip/members", json={"contact_ids": [one]}).is_success
    with engine.begin() as conn:
        add_tags(conn, clock, one, ["a", "b"])
    happened(engine, clock, one, "page", clock.now(), path="/pricing")
    happened(engine, clock, two, "signup", clock.now(), plan="pro")
    types = {"page", "signup"}
    with engine.connect() as conn:
        bulk = load_contacts(conn, [one, two, 999], types)
        assert sorted(bulk) == [one, two]
        for contact in (one, two):
            single = load_contact_data(conn, contact, event_types=types)
            assert bulk[contact] == single
    assert bulk[one].lists == {"vip"}
    assert bulk[one].tags == {"a", "b"}


def test_score_crossings_segment_entries_splits_and_manual_triggers(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    from ekiden.scoring.examples import BEHAVIOUR
    from ekiden.scoring.service import adjust_score
    from ekiden.worker import Worker, wait_until_idle

    now = clock.now()
    assert admin.post("/api/scores", json=BEHAVIOUR).status_code == 201
    segment = {"slug": "buchos", "name": "部長", "filter": {"tag": "bucho"}}
    assert admin.post("/api/segments", json=segment).status_code == 201
    riser, early, bucho = (person(engine, clock, f"{n}@example.jp") for n in ("r", "e", "b"))

    def award(contact: int, points: float, days_ago: int, ref: str) -> None:
        clock.set(now - timedelta(days=days_ago))
        with engine.begin() as conn:
            adjust_score(conn, clock, contact_id=contact, score_key="behaviour", points=points,
                         reason="test", ref=ref, zone=settings.zone)  # fmt: skip

    award(riser, 20, 10, "r1")  # 0 -> 20: below 30
    award(riser, 20, 5, "r2")  # 20 -> 40: crosses 30, 5 days ago
    award(early, 50, 40, "e1")  # crossed 40 days ago: outside the window
    clock.set(now - timedelta(days=3))
    with engine.begin() as conn:
        add_tags(conn, clock, bucho, ["bucho"])
    wait_until_idle(Worker(engine, clock, settings))  # the segment takes them in, 3 days ago
    clock.set(now)

    definition = {
        "key": "mixed",
        "name": "mixed",
        "entry": {"triggers": [{"score_crossed": "behaviour", "at_least": 30},
                               {"segment_entered": "buchos"}, {"manual": True}]},
        "start": "ab",
        "nodes": [
            {"id": "ab", "type": "split", "paths": [{"weight": 1, "next": "x"},
                                                     {"weight": 1, "next": "y"}]},
            {"id": "x", "type": "add_tag", "tag": "x"},
            {"id": "y", "type": "add_tag", "tag": "y"},
        ],
    }  # fmt: skip
    result = simulated(admin, definition=definition, days=30)
    assert (result["facts"], result["entered"]) == (2, 2)
    nodes = by_node(result)
    assert nodes["ab"] == (2, 2, 0, 0, 0)
    assert nodes["x"][0] + nodes["y"][0] == 2
    assert "manual_not_simulated" in result["assumptions"]
    assert simulated(admin, definition=definition, days=30) == result  # repeatable
