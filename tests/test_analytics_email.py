"""The email performance report on a small hand-built dataset: per email, per journey node
and per day of sending in Asia/Tokyo — sent, delivered, bounced, human and machine opens and
clicks, unsubscribes — and the forms and stage moves a click led to within the window;
merged recipients, erased contacts, REST, CLI and bad input."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, insert
from tests.report_support import run_named
from typer.testing import CliRunner

from ekiden.analytics.reports import Period, ReportResult
from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.contacts.merge import merge_contacts
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid
from ekiden.journeys.tables import enrolments, journeys
from ekiden.lifecycle.automatic import enter_first_stages
from ekiden.lifecycle.models import MoveIn
from ekiden.lifecycle.moves import move_contact
from ekiden.messaging.sends_tables import email_messages
from ekiden.messaging.tables import email_templates
from ekiden.tracking.events import NewEvent, record_events

TOKYO = ZoneInfo("Asia/Tokyo")
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31), TOKYO)


def tokyo(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TOKYO)


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


class Mail:
    def __init__(self, engine: Engine, clock: FrozenClock) -> None:
        self.engine, self.clock = engine, clock
        self.count = 0

    def contact(self, email: str, company: str | None = None) -> int:
        self.clock.set(tokyo(2, 1))
        with self.engine.begin() as conn:
            cid = upsert_contact(
                conn,
                self.clock,
                email=email,
                changes=ContactChanges(company=company),
                source_kind="api",
            ).contact_id
            enter_first_stages(conn, self.clock, [cid])
        return cid

    def message(
        self, cid: int, template: str, sent: datetime, status: str = "sent", key: str = ""
    ) -> int:
        self.count += 1
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(email_messages)
                    .values(contact_id=cid, key=key or f"test:{self.count}", template_key=template,
                            template_version=1, category="marketing", status=status,
                            queued_at=sent, sent_at=None if status == "skipped" else sent)
                    .returning(email_messages.c.id)
                ).scalar_one()
            )  # fmt: skip

    def event(
        self, cid: int, kind: str, when: datetime, message: int | None = None, **kw: Any
    ) -> None:
        machine = kw.pop("machine", False)
        props = {**kw, **({"send_id": str(message)} if message is not None else {})}
        with self.engine.begin() as conn:
            record_events(
                conn,
                self.clock,
                [
                    NewEvent(
                        type=kind,
                        occurred_at=when,
                        source="email" if kind.startswith("email_") else "form",
                        contact_id=cid,
                        properties=props,
                        machine=machine,
                        machine_reason="scanner" if machine else None,
                    )
                ],
            )

    def move(self, cid: int, stage: str, when: datetime) -> None:
        self.clock.set(when)
        with self.engine.begin() as conn:
            move_contact(conn, self.clock, cid, MoveIn(stage=stage), moved_by="test")

    def enrolment(self, journey_id: int, cid: int) -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(enrolments)
                    .values(journey_id=journey_id, version=1, contact_id=cid, node="end",
                            state="completed", trigger="manual", entered_at=tokyo(3, 1, 0))
                    .returning(enrolments.c.id)
                ).scalar_one()
            )  # fmt: skip


@pytest.fixture
def mail(engine: Engine, clock: FrozenClock) -> dict[str, int]:
    """The dataset the tests work out by hand."""
    m = Mail(engine, clock)
    ids = {name: m.contact(f"{name}@example.jp") for name in ("x2", "x3", "x4", "x5", "xl")}
    ids["x1"] = m.contact("x1@example.jp", company="Acme")
    with engine.begin() as conn:
        conn.execute(
            insert(email_templates),
            [{"key": key, "name": name, "category": "marketing", "version": 1,
              "created_at": tokyo(1, 1), "updated_at": tokyo(1, 1)}
             for key, name in (("news-mar", "March news"), ("welcome-1", "Welcome"))],
        )  # fmt: skip
        journey_id = conn.execute(
            insert(journeys)
            .values(key="welcome", name="Welcome", status="active", version=1,
                    created_at=tokyo(1, 1), updated_at=tokyo(1, 1))
            .returning(journeys.c.id)
        ).scalar_one()  # fmt: skip
    # the March newsletter, sent on March 10th
    sent = tokyo(3, 10)
    m1 = m.message(ids["x1"], "news-mar", sent)
    m.event(ids["x1"], "email_opened", tokyo(3, 10, 10, 1), m1, machine=True)  # a scanner
    m.event(ids["x1"], "email_opened", tokyo(3, 10, 11), m1)
    m.event(ids["x1"], "email_clicked", tokyo(3, 10, 11, 5), m1)
    m.event(ids["x1"], "email_clicked", tokyo(3, 10, 11, 6), m1)  # a second click: one message
    m.event(ids["x1"], "form_submitted", tokyo(3, 11), form="seminar")
    m.move(ids["x1"], "nurturing", tokyo(3, 12))
    m2 = m.message(ids["x2"], "news-mar", sent)
    m.event(ids["x2"], "email_opened", tokyo(3, 10, 10, 1), m2, machine=True)
    m.event(ids["x2"], "email_clicked", tokyo(3, 10, 10, 1), m2, machine=True)
    m.event(ids["x2"], "form_submitted", tokyo(3, 11), form="seminar")  # no human click before
    m.message(ids["x3"], "news-mar", sent, status="bounced")
    m4 = m.message(ids["xl"], "news-mar", sent)  # to a contact merged into x2 later
    m.event(ids["xl"], "email_opened", tokyo(3, 10, 12), m4)
    m.event(ids["xl"], "email_unsubscribed", tokyo(3, 10, 12, 1), m4)
    m5 = m.message(ids["x5"], "news-mar", sent)  # x5 is erased below
    m.event(ids["x5"], "email_opened", tokyo(3, 10, 12), m5)
    m.message(ids["x4"], "news-mar", sent, status="skipped")  # never sent
    # the welcome journey's mail: 2026-03-01 15:30 UTC is March 2nd 00:30 in Tokyo,
    # 14:30 UTC still March 1st (23:30)
    e4, e3 = m.enrolment(journey_id, ids["x4"]), m.enrolment(journey_id, ids["x3"])
    m6 = m.message(ids["x4"], "welcome-1", utc(3, 1, 15, 30), key=f"journey:{e4}:welcome-mail:1")
    m.event(ids["x4"], "email_clicked", tokyo(3, 2, 1), m6)
    m.event(ids["x4"], "form_submitted", tokyo(3, 3), form="trial")
    m.move(ids["x4"], "hot", tokyo(3, 20))  # 18 days after the click
    m.message(ids["x3"], "welcome-1", utc(3, 1, 14, 30), key=f"journey:{e3}:welcome-mail:1")
    # promotions around the period's edges in Tokyo
    m8 = m.message(ids["x1"], "promo", utc(2, 28, 14))  # February 28th 23:00: before
    m.event(ids["x1"], "email_opened", tokyo(3, 1, 9), m8)
    m.message(ids["x1"], "promo", utc(3, 31, 15, 30))  # April 1st 00:30: after
    m.message(ids["x4"], "promo", utc(3, 31, 14, 30))  # March 31st 23:30: inside
    # a message whose key only looks like a journey's: an email, but no journey node
    m.message(ids["x4"], "misc", tokyo(3, 20), key="journey:oops:x:1")
    clock.set(tokyo(3, 15))
    with engine.begin() as conn:
        merge_contacts(conn, clock, winner_id=ids["x2"], loser_id=ids["xl"], merged_by="test")
        conn.execute(delete(contacts).where(contacts.c.id == ids["x5"]))
    clock.set(tokyo(4, 10))
    return ids


def report(engine: Engine, clock: FrozenClock, **kw: Any) -> ReportResult:
    return run_named(engine, clock, "emails", **{"period": MARCH, **kw})


def rows(result: ReportResult, name: str, keys: int = 1) -> dict[Any, dict[str, Any]]:
    found = next(t for t in result.tables if t.name == name)
    return {
        (row[0] if keys == 1 else tuple(row[:keys])): dict(zip(found.columns, row, strict=True))
        for row in found.rows
    }


NUMBERS = ("sent", "delivered", "bounced", "opened", "opened_machine", "clicked",
           "clicked_machine", "unsubscribed", "open_rate", "click_rate", "led_to_form",
           "led_to_stage")  # fmt: skip


def numbers(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in NUMBERS)


def test_per_email_counts_people_and_machines_apart(
    engine: Engine, clock: FrozenClock, mail: dict[str, int]
) -> None:
    emails = rows(report(engine, clock), "emails")
    assert {k: numbers(v) for k, v in emails.items()} == {
        # m1 m2 m3 m4 (m5's contact was erased, the skipped one was never sent); m3 bounced.
        # opened by people: m1, m4 (its recipient merged into x2 still counts); machines: m1 m2.
        # clicked by a person: m1 (twice: one message); by a machine: m2. Unsubscribed: m4.
        # m1's click led to the seminar form and the move to nurturing; m2 had only a
        # machine click, so x2's form does not count.
        "news-mar": (4, 3, 1, 2, 2, 1, 1, 1, round(200 / 3, 1), round(100 / 3, 1), 1, 1),
        # m6 and m7 (March 2nd and 1st in Tokyo); m6's click led to the trial form, not to
        # the move to hot 18 days later
        "welcome-1": (2, 2, 0, 0, 0, 1, 0, 0, 0.0, 50.0, 1, 0),
        # only the one sent on March 31st 23:30 in Tokyo
        "promo": (1, 1, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0, 0),
        "misc": (1, 1, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0, 0),
    }
    assert emails["news-mar"]["name"] == "March news"
    assert emails["promo"]["name"] is None  # no such template stored


def test_the_window_decides_what_a_click_led_to(
    engine: Engine, clock: FrozenClock, mail: dict[str, int]
) -> None:
    week = rows(report(engine, clock), "led_to", keys=3)
    assert {k: v["messages"] for k, v in week.items()} == {
        ("news-mar", "form", "seminar"): 1,
        ("news-mar", "stage", "nurturing"): 1,
        ("welcome-1", "form", "trial"): 1,
    }
    month = report(engine, clock, options={"window_days": "30"})
    assert rows(month, "emails")["welcome-1"]["led_to_stage"] == 1
    assert ("welcome-1", "stage", "hot") in rows(month, "led_to", keys=3)
    one_day = report(engine, clock, options={"window_days": "1"})
    # the trial form came 1 day 9 hours after the click; the seminar form 22h55m after
    assert rows(one_day, "emails")["welcome-1"]["led_to_form"] == 0
    assert rows(one_day, "emails")["news-mar"]["led_to_form"] == 1


def test_per_journey_node(engine: Engine, clock: FrozenClock, mail: dict[str, int]) -> None:
    nodes = rows(report(engine, clock), "journey_nodes", keys=3)
    assert {k: numbers(v) for k, v in nodes.items()} == {
        ("welcome", "welcome-mail", "welcome-1"): (2, 2, 0, 0, 0, 1, 0, 0, 0.0, 50.0, 1, 0),
    }


def test_per_day_of_sending_in_tokyo(
    engine: Engine, clock: FrozenClock, mail: dict[str, int]
) -> None:
    days = rows(report(engine, clock), "days")
    assert len(days) == 31
    assert min(days) == "2026-03-01"
    assert [v["day"] for v in days.values()] == sorted(days)
    sent = {k: v["sent"] for k, v in days.items() if v["sent"]}
    assert sent == {
        "2026-03-01": 1, "2026-03-02": 1, "2026-03-10": 4, "2026-03-20": 1, "2026-03-31": 1,
    }  # fmt: skip
    assert numbers(days["2026-03-02"]) == (1, 1, 0, 0, 0, 1, 0, 0, 0.0, 100.0, 1, 0)
    assert days["2026-03-05"]["open_rate"] is None  # nothing delivered that day
    # April 1st in Tokyo holds the promotion sent on March 31st 15:30 UTC
    april = Period(date(2026, 4, 1), date(2026, 4, 1), TOKYO)
    assert rows(report(engine, clock, period=april), "emails")["promo"]["sent"] == 1


def test_a_filter_follows_merged_recipients(
    engine: Engine, clock: FrozenClock, mail: dict[str, int]
) -> None:
    acme = report(engine, clock, filter={"field": "company", "op": "eq", "value": "Acme"})
    assert {k: v["sent"] for k, v in rows(acme, "emails").items()} == {"news-mar": 1}
    by_id = {"field": "email", "op": "eq", "value": "x2@example.jp"}
    x2 = rows(report(engine, clock, filter=by_id), "emails")
    # m2 and m4, sent to the contact merged into x2
    assert (x2["news-mar"]["sent"], x2["news-mar"]["unsubscribed"]) == (2, 1)


def test_notes_in_japanese_and_english(
    engine: Engine, clock: FrozenClock, mail: dict[str, int]
) -> None:
    assert report(engine, clock, locale="en").notes == [
        "8 emails sent, 7 delivered: 2 opened and 2 clicked by people (28.6% / 28.6%); "
        "machine activity counted apart: 2 opens, 1 clicks"
    ]
    assert report(engine, clock).notes[0].startswith("送信 8 通、配信 7 通")
    empty = report(engine, clock, period=Period(date(2025, 1, 1), date(2025, 1, 2), TOKYO))
    assert empty.notes == ["期間内に送信したメールはありません"]
    assert [len(t.rows) for t in empty.tables] == [0, 0, 2, 0]


@pytest.mark.parametrize("window", ["0", "91", "week"])
def test_a_bad_window_is_refused(engine: Engine, clock: FrozenClock, window: str) -> None:
    with pytest.raises(Invalid, match="window_days"):
        report(engine, clock, options={"window_days": window})


def test_rest_json_csv_and_errors(admin: TestClient, mail: dict[str, int]) -> None:
    params = {"from": "2026-03-01", "to": "2026-03-31"}
    answer = admin.get("/api/reports/emails", params=params)
    assert answer.status_code == 200, answer.text
    assert [t["name"] for t in answer.json()["tables"]] == [
        "emails", "journey_nodes", "days", "led_to",
    ]  # fmt: skip
    as_csv = admin.get("/api/reports/emails", params={**params, "format": "csv"})
    lines = list(csv.reader(io.StringIO(as_csv.text)))
    assert lines[0] == ["emails", "email", "name", *NUMBERS[:8], "complained", *NUMBERS[8:]]
    news = next(r for r in lines if r[1:2] == ["news-mar"])
    assert news[3:6] == ["4", "3", "1"]
    bad = admin.get("/api/reports/emails", params={**params, "window_days": "x"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_option"
    backwards = admin.get("/api/reports/emails", params={"from": "2026-03-31", "to": "2026-03-01"})
    assert backwards.json()["error"]["code"] == "invalid_period"


def test_cli_prints_the_report(
    db_url: str, mail: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EKIDEN_DATABASE_URL", db_url)
    monkeypatch.setenv("EKIDEN_SECRET_KEY", "test-secret-key-" + "x" * 32)
    runner = CliRunner()
    days = ["--from", "2026-03-01", "--to", "2026-03-31"]
    shown = runner.invoke(cli_app, ["report", "emails", *days, "--locale", "en"])
    assert shown.exit_code == 0, shown.output
    assert "8 emails sent, 7 delivered" in shown.output
    assert "journey_nodes" in shown.output
    as_csv = runner.invoke(cli_app, ["report", "emails", *days, "--csv", "-o", "window_days=30"])
    assert as_csv.exit_code == 0, as_csv.output
    assert "welcome-1,stage,hot,1" in as_csv.output
    bad = runner.invoke(cli_app, ["report", "emails", *days, "-o", "window_days=0"])
    assert bad.exit_code == 1
    assert "window_days" in bad.output
