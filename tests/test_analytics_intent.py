"""The web intent report on a small hand-built dataset: page views, known contacts and dwell
time (human only, Tokyo days), and the pages converters visited more than the others (skips,
moves back, merged and erased contacts, machine activity), REST, CLI and bad input."""

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
from ekiden.contacts.merge import merge_contacts
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid
from ekiden.lifecycle.automatic import enter_first_stages
from ekiden.lifecycle.models import MoveIn
from ekiden.lifecycle.moves import move_contact
from ekiden.tracking.events import NewEvent, record_events

TOKYO = ZoneInfo("Asia/Tokyo")
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31), TOKYO)


def tokyo(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TOKYO)


class Site:
    def __init__(self, engine: Engine, clock: FrozenClock) -> None:
        self.engine, self.clock = engine, clock

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

    def move(self, cid: int, stage: str, when: datetime) -> None:
        self.clock.set(when)
        with self.engine.begin() as conn:
            move_contact(conn, self.clock, cid, MoveIn(stage=stage), moved_by="test")

    def view(self, cid: int | None, path: str, when: datetime, *, machine: bool = False) -> None:
        with self.engine.begin() as conn:
            record_events(
                conn,
                self.clock,
                [
                    NewEvent(
                        type="page",
                        occurred_at=when,
                        source="browser",
                        contact_id=cid,
                        anonymous_id=None if cid else "anon-1",
                        path=path,
                        machine=machine,
                    )
                ],
            )

    def dwell(
        self, cid: int | None, path: str, view: str, ms: int, when: datetime, machine: bool = False
    ) -> None:
        with self.engine.begin() as conn:
            record_events(
                conn,
                self.clock,
                [
                    NewEvent(
                        type="page_dwell",
                        occurred_at=when,
                        source="browser",
                        contact_id=cid,
                        anonymous_id=None if cid else "anon-1",
                        path=path,
                        dwell_ms=ms,
                        properties={"dwell_ms": ms, "page_message_id": view, "path": path},
                        machine=machine,
                    )
                ],
            )


@pytest.fixture
def site(engine: Engine, clock: FrozenClock) -> dict[str, int]:
    """Views at 10:00 Tokyo unless said otherwise; every contact starts in acquired."""
    s = Site(engine, clock)
    ids = {k: s.contact(f"{k}@example.jp", "Acme" if k in "ac" else None) for k in "abcdefwlx"}
    a, b, c, d, e, f = (ids[k] for k in "abcdef")
    s.view(a, "/pricing", tokyo(3, 3))
    s.dwell(a, "/pricing", "a-p1", 30_000, tokyo(3, 3, 10, 1))
    s.dwell(a, "/pricing", "a-p1", 15_000, tokyo(3, 3, 10, 5))  # the same view, later
    s.view(a, "/blog", tokyo(3, 4))
    s.move(a, "hot", tokyo(3, 5))
    s.view(a, "/case", tokyo(3, 6))  # after converting
    s.view(b, "/pricing", tokyo(3, 10))
    s.dwell(b, "/pricing", "b-p1", 10_000, tokyo(3, 10, 10, 1))
    s.move(b, "meeting", tokyo(3, 11))  # skips hot: reaches it
    s.move(b, "won", tokyo(3, 20))
    s.view(c, "/pricing", tokyo(2, 27))  # February
    s.view(c, "/blog", tokyo(3, 2))
    s.dwell(c, "/blog", "c-b1", 60_000, tokyo(3, 2, 10, 2))
    s.view(c, "/case", tokyo(3, 3))
    s.move(d, "hot", tokyo(2, 20))  # hot before March
    s.view(d, "/blog", tokyo(3, 5))
    s.move(d, "nurturing", tokyo(3, 6))  # sent back ...
    s.move(d, "hot", tokyo(3, 8))  # ... and forward again: still not a March conversion
    s.view(e, "/pricing", tokyo(3, 31, 23, 30))  # the last Tokyo evening of March
    s.dwell(e, "/pricing", "e-p1", 20_000, tokyo(3, 31, 23, 31))
    s.view(e, "/pricing", datetime(2026, 3, 31, 16, tzinfo=UTC))  # April 1st in Tokyo
    s.move(e, "hot", tokyo(4, 2))  # after the period
    s.view(f, "/pricing", tokyo(3, 5), machine=True)
    s.dwell(f, "/pricing", "f-p1", 99_000, tokyo(3, 5, 10, 1), machine=True)
    s.move(f, "hot", tokyo(3, 6))
    s.view(ids["l"], "/pricing", tokyo(3, 3))  # moves to w with the merge
    s.move(ids["l"], "hot", tokyo(3, 5))  # the merge gives w this further stage
    s.view(ids["w"], "/blog", tokyo(3, 4))
    s.view(ids["x"], "/pricing", tokyo(3, 3))
    s.move(ids["x"], "hot", tokyo(3, 4))
    s.view(None, "/pricing", tokyo(3, 3))  # anonymous
    s.dwell(None, "/pricing", "n-p1", 5_000, tokyo(3, 3, 10, 1))
    clock.set(tokyo(3, 12))
    with engine.begin() as conn:
        merge_contacts(conn, clock, winner_id=ids["w"], loser_id=ids["l"], merged_by="test")
        conn.execute(delete(contacts).where(contacts.c.id == ids["x"]))  # erased
    clock.set(tokyo(4, 10))
    return ids


def intent(engine: Engine, clock: FrozenClock, **kw: Any) -> ReportResult:
    return run_named(engine, clock, "intent", **{"period": MARCH, **kw})


def table(result: ReportResult, name: str) -> dict[str, dict[str, Any]]:
    found = next(t for t in result.tables if t.name == name)
    return {row[0]: dict(zip(found.columns, row, strict=True)) for row in found.rows}


def test_pages_count_human_views_known_contacts_and_dwell_in_tokyo_days(
    engine: Engine, clock: FrozenClock, site: dict[str, int]
) -> None:
    result = intent(engine, clock)
    pages = next(t for t in result.tables if t.name == "pages")
    assert [r[0] for r in pages.rows] == ["/pricing", "/blog", "/case"]  # by views
    got = table(result, "pages")
    # /pricing: a, b, e (23:30 on March 31st; not its April 1st view), w (the merged-away
    # contact's view moved to it), the anonymous visitor; not f (machine), not x (erased)
    assert got["/pricing"]["views"] == 5
    assert got["/pricing"]["contacts"] == 4
    # dwell per view: a 30 + 15 = 45 s, b 10, e 20, anonymous 5; f's machine dwell is out
    assert got["/pricing"]["dwell_views"] == 4
    assert got["/pricing"]["dwell_total_s"] == 80.0
    assert got["/pricing"]["dwell_median_s"] == 15.0  # (10 + 20) / 2
    assert (got["/blog"]["views"], got["/blog"]["contacts"]) == (4, 4)  # a c d w
    assert (got["/blog"]["dwell_total_s"], got["/blog"]["dwell_median_s"]) == (60.0, 60.0)
    assert (got["/case"]["views"], got["/case"]["dwell_views"]) == (2, 0)
    assert got["/case"]["dwell_median_s"] is None


def test_converters_are_compared_with_the_others_on_visits_before_converting(
    engine: Engine, clock: FrozenClock, site: dict[str, int]
) -> None:
    result = intent(engine, clock, locale="en")
    got = table(result, "converters")
    # converters (reached hot in March, visited before): a (/pricing, /blog; /case came
    # after), b (skipped to meeting), w (the merge on March 12th gave it the merged-away
    # contact's further stage, hot, after both its views). Others: c, e (hot only in April).
    # d was hot before March; f only had machine views.
    assert next(t for t in result.tables if t.name == "converters").rows == [
        ["/pricing", 3, 100.0, 1, 50.0, 2.0],  # e
        ["/blog", 2, 66.7, 1, 50.0, 1.33],  # a w / c
        ["/case", 0, 0.0, 1, 50.0, 0.0],  # c
    ]
    assert got["/pricing"]["lift"] == 2.0
    assert result.notes == [
        "Of 5 known contacts who visited in the period, 3 reached the stage hot in it after "
        "visiting",
        "/pricing was visited by 100% of converters against 50% of the others (2 times as often)",
    ]


def test_the_conversion_stage_is_an_option(
    engine: Engine, clock: FrozenClock, site: dict[str, int]
) -> None:
    got = table(intent(engine, clock, options={"stage": "won"}), "converters")
    # won: b only (its /pricing visit). Others: a (all its March visits), c, d, e, w
    assert (got["/pricing"]["converters"], got["/pricing"]["others"]) == (1, 3)  # a e w
    assert got["/pricing"]["others_rate"] == 60.0
    assert got["/pricing"]["lift"] == round(1 / 0.6, 2)
    assert (got["/blog"]["converters"], got["/blog"]["others"]) == (0, 4)  # a c d w


def test_a_filter_restricts_views_and_comparison_to_matching_contacts(
    engine: Engine, clock: FrozenClock, site: dict[str, int]
) -> None:
    result = intent(engine, clock, filter={"field": "company", "op": "eq", "value": "Acme"})
    pages = table(result, "pages")
    assert {k: (v["views"], v["contacts"], v["dwell_total_s"]) for k, v in pages.items()} == {
        "/pricing": (1, 1, 45.0),
        "/blog": (2, 2, 60.0),
        "/case": (2, 2, None),
    }
    conv = table(result, "converters")
    assert {k: (v["converters"], v["others"]) for k, v in conv.items()} == {
        "/pricing": (1, 0),
        "/blog": (1, 1),
        "/case": (0, 1),
    }


def test_limit_and_bad_options(engine: Engine, clock: FrozenClock, site: dict[str, int]) -> None:
    limited = intent(engine, clock, options={"limit": "1"})
    assert [len(t.rows) for t in limited.tables] == [1, 1]
    with pytest.raises(Invalid, match="lost"):
        intent(engine, clock, options={"stage": "lost"})
    with pytest.raises(Invalid, match="stage"):
        intent(engine, clock, options={"stage": "nope"})
    with pytest.raises(Invalid, match="limit"):
        intent(engine, clock, options={"limit": "0"})
    with pytest.raises(Invalid, match="no_such"):
        intent(engine, clock, filter={"field": "no_such", "op": "eq", "value": 1})


def test_rest_json_csv_and_errors(admin: TestClient, site: dict[str, int]) -> None:
    params = {"from": "2026-03-01", "to": "2026-03-31"}
    answer = admin.get("/api/reports/intent", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.json()["notes"][0] == (
        "期間中に訪問した既知の連絡先 5 件のうち、3 件が訪問後に期間内にステージ hot に到達しました"
    )
    answer = admin.get("/api/reports/intent", params={**params, "format": "csv"})
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == ["pages", "path", "views", "contacts", "dwell_views", "dwell_total_s",
                       "dwell_median_s"]  # fmt: skip
    assert rows[1] == ["", "/pricing", "5", "4", "4", "80.0", "15.0"]
    bad = admin.get("/api/reports/intent", params={**params, "stage": "nope"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_option"


def test_cli_prints_the_report(
    db_url: str, site: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EKIDEN_DATABASE_URL", db_url)
    monkeypatch.setenv("EKIDEN_SECRET_KEY", "test-secret-key-" + "x" * 32)
    shown = CliRunner().invoke(
        cli_app,
        ["report", "intent", "--from", "2026-03-01", "--to", "2026-03-31", "--locale", "en",
         "-o", "stage=hot"],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "/pricing was visited by 100% of converters" in " ".join(shown.output.split())
    bad = CliRunner().invoke(
        cli_app, ["report", "intent", "--from", "2026-03-01", "--to", "2026-03-31",
                  "-o", "limit=many"],
    )  # fmt: skip
    assert bad.exit_code == 1
    assert "limit" in bad.output
