"""The active prospects report on a small hand-built dataset: contacts active in the last N
days day by day (Tokyo days, machine views, merged and erased contacts, anonymous visitors)
and new known contacts by day and source (first UTM source, form, how it became known)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select
from tests.report_support import run_named
from typer.testing import CliRunner

from ekiden.analytics.days import local_day
from ekiden.analytics.reports import Period, ReportResult
from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.contacts.merge import merge_contacts
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events

TOKYO = ZoneInfo("Asia/Tokyo")
WEEK = Period(date(2026, 3, 1), date(2026, 3, 7), TOKYO)


def tokyo(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TOKYO)


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def visits(engine: Engine, clock: FrozenClock) -> dict[str, int]:
    ids: dict[str, int] = {}

    def contact(key: str, when: datetime, kind: str = "api", ref: str | None = None) -> None:
        clock.set(when)
        with engine.begin() as conn:
            ids[key] = upsert_contact(
                conn,
                clock,
                email=f"{key}@example.jp",
                changes=ContactChanges(company="Acme" if key in ("a", "b") else None),
                source_kind=kind,
                source_ref=ref,
            ).contact_id

    def view(
        key: str | None, when: datetime, utm: str | None = None, machine: bool = False
    ) -> None:
        with engine.begin() as conn:
            record_events(
                conn,
                clock,
                [
                    NewEvent(
                        type="page",
                        occurred_at=when,
                        source="browser",
                        contact_id=ids[key] if key else None,
                        anonymous_id=None if key else "anon",
                        path="/",
                        properties={"utm_source": utm} if utm else {},
                        machine=machine,
                    )
                ],
            )

    contact("a", tokyo(2, 20))
    contact("b", utc(2, 28, 15, 30), "form", "contact")  # March 1st 00:30 in Tokyo
    contact("c", utc(2, 28, 14, 30))  # February 28th 23:30 in Tokyo: not new
    contact("d", tokyo(2, 20))
    contact("e", tokyo(3, 2), "form", "seminar")
    contact("f", tokyo(3, 2))
    contact("w", tokyo(3, 4))
    contact("l", tokyo(3, 4))  # merged into w below
    contact("x", tokyo(3, 4))  # erased below
    contact("g", tokyo(3, 7, 23, 59))
    contact("h", utc(3, 7, 15))  # March 8th 00:00 in Tokyo: after the period
    view("a", tokyo(2, 27))
    view("a", tokyo(3, 3))
    view("a", tokyo(3, 3, 18))  # the same day again
    view("b", utc(2, 28, 15, 30), utm="google")  # March 1st in Tokyo
    view("c", utc(2, 28, 14, 30))  # February 28th in Tokyo
    view("d", tokyo(3, 2), machine=True)
    view("f", tokyo(3, 1), utm="newsletter", machine=True)  # a machine's UTM does not count
    view("f", tokyo(3, 2))
    view("f", tokyo(3, 6), utm="twitter")
    view("l", tokyo(3, 5))  # moves to w with the merge
    view("x", tokyo(3, 4))
    view(None, tokyo(3, 4), utm="google")
    clock.set(tokyo(3, 6, 12))
    with engine.begin() as conn:
        merge_contacts(conn, clock, winner_id=ids["w"], loser_id=ids["l"], merged_by="test")
        conn.execute(delete(contacts).where(contacts.c.id == ids["x"]))  # erased
    clock.set(tokyo(3, 20))
    return ids


def prospects(engine: Engine, clock: FrozenClock, **kw: Any) -> ReportResult:
    return run_named(
        engine,
        clock,
        "prospects",
        **{"period": WEEK, "options": {"active_days": "3"}, "locale": "en", **kw},
    )


def rows(result: ReportResult, name: str) -> list[list[Any]]:
    return next(t for t in result.tables if t.name == name).rows


def test_active_contacts_in_a_rolling_window_of_tokyo_days(
    engine: Engine, clock: FrozenClock, visits: dict[str, int]
) -> None:
    daily = rows(prospects(engine, clock), "daily")
    # human views by known live contacts: a 2/27 3/3, b 3/1, c 2/28, f 3/2 3/6, w 3/5 (the
    # merged-away contact's view); a window of 3 days ending on each day
    assert [r[:3] for r in daily] == [
        ["2026-03-01", 3, 1],  # a c b
        ["2026-03-02", 3, 1],  # c b f
        ["2026-03-03", 3, 1],  # b f a
        ["2026-03-04", 2, 0],  # f a (x was erased; the anonymous visitor is not known)
        ["2026-03-05", 2, 1],  # a w
        ["2026-03-06", 2, 1],  # w f
        ["2026-03-07", 2, 0],  # w f
    ]


def test_new_known_contacts_by_day_and_source(
    engine: Engine, clock: FrozenClock, visits: dict[str, int]
) -> None:
    result = prospects(engine, clock)
    # b 3/1 (its first UTM beats its form), e f 3/2, w 3/4, g 3/7 23:59; not c (February in
    # Tokyo), l (merged away), x (erased), h (March 8th in Tokyo)
    assert [r[3] for r in rows(result, "daily")] == [1, 2, 0, 1, 0, 0, 1]
    assert rows(result, "acquisition") == [
        ["2026-03-01", "utm:google", 1],
        ["2026-03-02", "form:seminar", 1],
        ["2026-03-02", "utm:twitter", 1],  # f: the first human view with a UTM source
        ["2026-03-04", "api", 1],
        ["2026-03-07", "api", 1],
    ]
    assert rows(result, "sources") == [
        ["api", 2, 40.0],
        ["form:seminar", 1, 20.0],
        ["utm:google", 1, 20.0],
        ["utm:twitter", 1, 20.0],
    ]
    assert result.notes == [
        "On 2026-03-07, 2 known contacts had visited the site in the last 3 days (3 on 2026-03-01)",
        "5 new known contacts in the period, most from api (40%)",
    ]


def test_the_default_window_is_30_days_and_a_filter_restricts_contacts(
    engine: Engine, clock: FrozenClock, visits: dict[str, int]
) -> None:
    default = prospects(engine, clock, options={})
    assert default.options == {"active_days": 30}
    assert [r[1] for r in rows(default, "daily")] == [3, 4, 4, 4, 5, 5, 5]
    acme = prospects(engine, clock, filter={"field": "company", "op": "eq", "value": "Acme"})
    assert [r[1] for r in rows(acme, "daily")] == [2, 1, 2, 1, 1, 0, 0]  # a b
    assert rows(acme, "sources") == [["utm:google", 1, 100.0]]


def test_days_follow_summer_time(engine: Engine, clock: FrozenClock) -> None:
    """In New York the offset changes on 2026-03-08 at 07:00 UTC."""
    zone = ZoneInfo("America/New_York")
    moments = [utc(3, 8, 4, 59), utc(3, 8, 5), utc(3, 9, 3, 59), utc(3, 9, 4)]
    with engine.begin() as conn:
        record_events(
            conn, clock, [NewEvent(type="x", occurred_at=m, source="api") for m in moments]
        )
        day = local_day(events.c.occurred_at, zone, utc(3, 1, 0), utc(3, 31, 0), conn.dialect.name)
        found = conn.execute(select(day).order_by(events.c.occurred_at)).scalars().all()
        assert [date(1970, 1, 1) + timedelta(days=n) for n in found] == [
            m.astimezone(zone).date() for m in moments
        ]
        assert [m.astimezone(zone).day for m in moments] == [7, 8, 8, 9]


def test_bad_input(engine: Engine, clock: FrozenClock) -> None:
    with pytest.raises(Invalid, match="active_days"):
        prospects(engine, clock, options={"active_days": "0"})
    with pytest.raises(Invalid, match="active_days"):
        prospects(engine, clock, options={"active_days": "a week"})
    with pytest.raises(Invalid, match="no_such"):
        prospects(engine, clock, filter={"field": "no_such", "op": "eq", "value": 1})


def test_rest_and_cli(
    admin: TestClient,
    db_url: str,
    visits: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params = {"from": "2026-03-01", "to": "2026-03-07", "active_days": "3", "locale": "ja"}
    body = admin.get("/api/reports/prospects", params=params).json()
    assert body["tables"][0]["rows"][0] == ["2026-03-01", 3, 1, 1]
    assert body["notes"][1] == "期間中の新規の既知連絡先は 5 件、最多の獲得元は api（40%）"
    as_csv = admin.get("/api/reports/prospects", params={**params, "format": "csv"}).text
    blocks = list(csv.reader(io.StringIO(as_csv)))
    assert blocks[0] == ["daily", "day", "active", "visited", "new_contacts"]
    bad = admin.get("/api/reports/prospects", params={**params, "active_days": "-1"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_option"
    monkeypatch.setenv("EKIDEN_DATABASE_URL", db_url)
    monkeypatch.setenv("EKIDEN_SECRET_KEY", "test-secret-key-" + "x" * 32)
    shown = CliRunner().invoke(
        cli_app, ["report", "prospects", "--from", "2026-03-01", "--to", "2026-03-07",
                  "-o", "active_days=3", "--locale", "en"],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "most from api" in shown.output


@pytest.mark.parametrize(
    ("report", "params", "code"),
    [
        ("prospects", {"from": "2026-03-07", "to": "2026-03-01"}, "invalid_period"),
        ("intent", {"from": "2026-02-29", "to": "2026-03-01"}, "invalid_date"),
        ("journey", {"from": "2026-03-01", "to": "2026-03-07", "filter": "[1"}, "invalid_filter"),
        ("prospects", {"from": "2026-03-01", "to": "2026-03-07", "colour": "red"},
         "unknown_option"),
        ("intent", {"from": "2026-03-01", "to": "2026-03-07", "stage": "lost"},
         "invalid_option"),
    ],
)  # fmt: skip
def test_rest_names_what_is_wrong(
    admin: TestClient, report: str, params: dict[str, str], code: str
) -> None:
    answer = admin.get(f"/api/reports/{report}", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == code
    unknown = admin.get("/api/reports/prospect", params={"from": "2026-03-01", "to": "2026-03-07"})
    assert unknown.status_code == 404
    assert "prospects" in unknown.json()["error"]["message"]  # the known names are listed
