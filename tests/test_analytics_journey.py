"""The journey report on a journey run by the real engine: per node what visits did in the
period (Tokyo days), conversion of the period's enrolments to the goal, erased contacts,
filters, REST, CLI and bad input."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete
from tests.report_support import run_named
from typer.testing import CliRunner

from ekiden.analytics.reports import Period, ReportResult
from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import contacts
from ekiden.contacts.tags import add_tags
from ekiden.errors import Invalid
from ekiden.journeys import service
from ekiden.journeys.engine import run_due

TOKYO = ZoneInfo("Asia/Tokyo")
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31), TOKYO)

WELCOME: dict[str, Any] = {
    "key": "welcome",
    "name": "welcome",
    "entry": {"triggers": [{"manual": True}]},
    "goal": {"tag": "customer"},
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "add_tag", "tag": "welcomed", "next": "w"},
        {"id": "w", "type": "wait", "duration": "3d", "next": "bye"},
        {"id": "bye", "type": "add_tag", "tag": "done"},
    ],
}


def tokyo(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TOKYO)


@pytest.fixture
def journey(engine: Engine, clock: FrozenClock, settings: Settings) -> dict[str, int]:
    ids: dict[str, int] = {}
    clock.set(tokyo(2, 1))
    with engine.begin() as conn:
        for key in "abcdefz":
            ids[key] = upsert_contact(
                conn,
                clock,
                email=f"{key}@example.jp",
                changes=ContactChanges(company="Acme" if key in "ab" else None),
                source_kind="api",
            ).contact_id
        service.create_journey(conn, clock, WELCOME, settings.zone)
        service.activate_journey(conn, clock, "welcome", settings.zone)
        service.create_journey(conn, clock, {**WELCOME, "key": "aimless", "goal": None},
                               settings.zone)  # fmt: skip

    def enrol(when: datetime, *keys: str) -> None:
        clock.set(when)
        with engine.begin() as conn:
            service.enrol_contacts(
                conn, clock, "welcome", [ids[k] for k in keys], zone=settings.zone
            )
        while run_due(engine, clock, settings):
            pass

    enrol(tokyo(2, 27), "d")  # February: waits until March 2nd
    enrol(tokyo(3, 2), "a", "b", "c", "z")  # d passes the wait and ends now too
    clock.set(tokyo(3, 3))
    with engine.begin() as conn:
        add_tags(conn, clock, ids["b"], ["customer"])
    enrol(tokyo(3, 5))  # the wait ends: a and c go on, b has reached the goal
    clock.set(tokyo(3, 10))
    with engine.begin() as conn:
        conn.execute(delete(contacts).where(contacts.c.id == ids["z"]))  # erased
    enrol(tokyo(3, 31, 23, 30), "e")  # the last Tokyo evening of March
    enrol(datetime(2026, 3, 31, 16, 0, tzinfo=UTC), "f")  # April 1st in Tokyo
    clock.set(tokyo(4, 1, 12))
    return ids


def report(engine: Engine, clock: FrozenClock, **kw: Any) -> ReportResult:
    return run_named(
        engine,
        clock,
        "journey",
        **{"period": MARCH, "options": {"journey": "welcome"}, "locale": "en", **kw},
    )


def rows(result: ReportResult, name: str) -> dict[str, dict[str, Any]]:
    found = next(t for t in result.tables if t.name == name)
    return {r[0]: dict(zip(found.columns, r, strict=True)) for r in found.rows}


def test_nodes_count_what_visits_did_in_the_period(
    engine: Engine, clock: FrozenClock, journey: dict[str, int]
) -> None:
    nodes = rows(report(engine, clock), "nodes")
    assert list(nodes) == ["hello", "w", "bye"]
    got = {
        k: [v[c] for c in ("entered", "passed", "exited", "converted", "failed", "waiting_now")]
        for k, v in nodes.items()
    }
    assert got == {
        # a b c e (f is April in Tokyo, d February, z erased)
        "hello": [4, 4, 0, 0, 0, 0],
        # d (its wait ended March 2nd), a b c, e (still waiting); b converted at the wait;
        # waiting now: e and f
        "w": [5, 3, 0, 1, 0, 2],
        "bye": [3, 3, 0, 0, 0, 0],  # d a c
    }
    assert nodes["w"]["type"] == "wait"


def test_goal_conversion_of_the_enrolments_of_the_period(
    engine: Engine, clock: FrozenClock, journey: dict[str, int]
) -> None:
    result = report(engine, clock)
    goal = rows(result, "goal")["welcome"]
    # enrolled in March: a b c e; b converted
    assert [goal[k] for k in ("has_goal", "enrolled", "contacts", "converted", "rate",
                              "converted_in_period")] == [True, 4, 4, 1, 25.0, 1]  # fmt: skip
    assert result.notes == [
        "Of 4 enrolments that began in the period, 1 reached the goal by its end (25%)"
    ]
    february = report(engine, clock, period=Period(date(2026, 2, 1), date(2026, 2, 28), TOKYO))
    assert rows(february, "goal")["welcome"]["enrolled"] == 1  # d
    assert rows(february, "nodes")["w"]["entered"] == 1
    assert rows(february, "nodes")["w"]["passed"] == 0  # its wait ended in March


def test_a_filter_restricts_the_contacts(
    engine: Engine, clock: FrozenClock, journey: dict[str, int]
) -> None:
    result = report(engine, clock, filter={"field": "company", "op": "eq", "value": "Acme"})
    nodes = rows(result, "nodes")
    assert (nodes["hello"]["entered"], nodes["w"]["passed"], nodes["w"]["converted"]) == (2, 1, 1)
    assert rows(result, "goal")["welcome"]["rate"] == 50.0


def test_a_journey_without_goal_says_so(
    engine: Engine, clock: FrozenClock, journey: dict[str, int]
) -> None:
    result = report(engine, clock, options={"journey": "aimless"}, locale="ja")
    assert result.notes == ["ジャーニー aimless にはゴールが設定されていません"]
    assert rows(result, "goal")["aimless"]["enrolled"] == 0
    assert rows(result, "goal")["aimless"]["rate"] is None


def test_bad_input(engine: Engine, clock: FrozenClock, journey: dict[str, int]) -> None:
    with pytest.raises(Invalid, match="'journey' is required"):
        report(engine, clock, options={})
    with pytest.raises(Invalid, match="no journey 'nope'"):
        report(engine, clock, options={"journey": "nope"})
    with pytest.raises(Invalid, match="no_such"):
        report(engine, clock, filter={"field": "no_such", "op": "eq", "value": 1})


def test_rest_and_cli(
    admin: TestClient, db_url: str, journey: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"from": "2026-03-01", "to": "2026-03-31", "journey": "welcome"}
    answer = admin.get("/api/reports/journey", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.json()["tables"][1]["rows"] == [["welcome", True, 4, 4, 1, 25.0, 1]]
    as_csv = list(
        csv.reader(io.StringIO(admin.get("/api/reports/journey",
                                         params={**params, "format": "csv"}).text))
    )  # fmt: skip
    assert as_csv[0][:4] == ["nodes", "node", "type", "entered"]
    assert as_csv[1][:4] == ["", "hello", "add_tag", "4"]
    missing = admin.get("/api/reports/journey", params={"from": "2026-03-01", "to": "2026-03-31"})
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "invalid_option"
    monkeypatch.setenv("EKIDEN_DATABASE_URL", db_url)
    monkeypatch.setenv("EKIDEN_SECRET_KEY", "test-secret-key-" + "x" * 32)
    shown = CliRunner().invoke(
        cli_app, ["report", "journey", "--from", "2026-03-01", "--to", "2026-03-31",
                  "-o", "journey=welcome", "--locale", "en"],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "reached the goal" in shown.output
