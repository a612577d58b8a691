"""The lifecycle funnel report on a small hand-built history: stages at the period end,
entries, conversion (skips, backward moves, merges), time in stage, stalled leads, the
bottleneck, cohorts, days in Asia/Tokyo, REST (JSON, CSV, errors, access) and the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from tests.report_support import run_named
from typer.testing import CliRunner

from ekiden.analytics.funnel import p90
from ekiden.analytics.reports import Period, ReportParams, ReportResult, run_report
from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.contacts.merge import merge_contacts
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.errors import Invalid, NotFound
from ekiden.lifecycle.automatic import enter_first_stages
from ekiden.lifecycle.models import MoveIn
from ekiden.lifecycle.moves import move_contact

TOKYO = ZoneInfo("Asia/Tokyo")
MARCH = Period(datetime(2026, 3, 1).date(), datetime(2026, 3, 31).date(), TOKYO)


def tokyo(month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TOKYO)


def utc(month: int, day: int, hour: int) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


class History:
    def __init__(self, engine: Engine, clock: FrozenClock) -> None:
        self.engine, self.clock = engine, clock

    def contact(self, email: str, when: datetime, company: str | None = None) -> int:
        """A contact created at ``when`` and entered into the first stage then."""
        self.clock.set(when)
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


@pytest.fixture
def history(engine: Engine, clock: FrozenClock) -> dict[str, int]:
    """The dataset whose numbers the tests work out by hand (times at 10:00 Tokyo unless
    said otherwise). February is the previous period of March (both 31 days)."""
    h = History(engine, clock)
    ids: dict[str, int] = {}
    # February: three leads
    ids["p1"] = h.contact("p1@example.jp", tokyo(2, 2))
    h.move(ids["p1"], "nurturing", tokyo(2, 5))
    h.move(ids["p1"], "hot", tokyo(2, 10))  # hot ever since: stalled
    ids["p2"] = h.contact("p2@example.jp", tokyo(2, 3))
    h.move(ids["p2"], "nurturing", tokyo(2, 6))
    h.move(ids["p2"], "hot", tokyo(2, 20))
    h.move(ids["p2"], "meeting", tokyo(3, 5))
    h.move(ids["p2"], "won", tokyo(3, 20))
    ids["p3"] = h.contact("p3@example.jp", tokyo(2, 4))
    h.move(ids["p3"], "nurturing", tokyo(2, 8))  # nurturing ever since: stalled
    # March
    ids["a"] = h.contact("a@example.jp", tokyo(3, 2), company="Acme")
    h.move(ids["a"], "hot", tokyo(3, 3))  # skips nurturing
    h.move(ids["a"], "meeting", tokyo(3, 10))
    ids["b"] = h.contact("b@example.jp", tokyo(3, 2), company="Acme")
    h.move(ids["b"], "nurturing", tokyo(3, 4))
    h.move(ids["b"], "hot", tokyo(3, 6))
    h.move(ids["b"], "nurturing", tokyo(3, 8))  # sent back
    ids["c"] = h.contact("c@example.jp", tokyo(3, 3))
    h.move(ids["c"], "nurturing", tokyo(3, 5))
    # 2026-02-28 16:00 UTC is March 1st 01:00 in Tokyo
    ids["d"] = h.contact("d@example.jp", utc(2, 28, 16))
    h.move(ids["d"], "nurturing", tokyo(3, 31, 23, 30))
    # 2026-03-31 16:00 / 23:00 UTC are April 1st in Tokyo: after the period
    ids["f"] = h.contact("f@example.jp", utc(3, 31, 16))
    ids["f2"] = h.contact("f2@example.jp", utc(3, 31, 23))
    ids["w"] = h.contact("w@example.jp", tokyo(3, 2))
    ids["loser"] = h.contact("loser@example.jp", tokyo(3, 2))
    h.move(ids["loser"], "nurturing", tokyo(3, 3))
    h.move(ids["loser"], "hot", tokyo(3, 4))  # history stays with the merged-away contact
    h.move(ids["w"], "nurturing", tokyo(3, 9))
    # the merge gives w the loser's further stage: a move nurturing → hot on March 12th
    clock.set(tokyo(3, 12))
    with engine.begin() as conn:
        merge_contacts(conn, clock, winner_id=ids["w"], loser_id=ids["loser"], merged_by="test")
    ids["g"] = h.contact("g@example.jp", tokyo(3, 2))
    h.move(ids["g"], "nurturing", tokyo(3, 3))
    h.move(ids["g"], "lost", tokyo(3, 7))
    clock.set(tokyo(4, 10))
    return ids


def funnel(engine: Engine, clock: FrozenClock, **kw: Any) -> ReportResult:
    return run_named(engine, clock, "funnel", **{"period": MARCH, **kw})


def table(result: ReportResult, name: str) -> dict[str, dict[str, Any]]:
    found = next(t for t in result.tables if t.name == name)
    return {str(row[0]) if name not in ("conversion", "reach") else f"{row[0]}>{row[1]}": dict(
        zip(found.columns, row, strict=True)) for row in found.rows}  # fmt: skip


def test_stages_at_the_period_end_and_entries_use_tokyo_days(
    engine: Engine, clock: FrozenClock, history: dict[str, int]
) -> None:
    stages = table(funnel(engine, clock), "stages")
    # at the end: nurturing p3 b c d; hot p1 w (by the merge); meeting a; won p2; lost g
    assert {k: v["contacts_at_end"] for k, v in stages.items()} == {
        "acquired": 0, "nurturing": 4, "hot": 2, "meeting": 1, "won": 1, "lost": 1,
    }  # fmt: skip
    # entered in March (Tokyo): acquired a b c d w g (d is February in UTC; f, f2 are March
    # in UTC but April in Tokyo; the merged-away contact does not count); b entered
    # nurturing twice but is one contact; a, b and w (by the merge) entered hot
    assert {k: v["entered"] for k, v in stages.items()} == {
        "acquired": 6, "nurturing": 5, "hot": 3, "meeting": 2, "won": 1, "lost": 1,
    }  # fmt: skip
    assert stages["nurturing"]["name"] == "育成"


def test_conversion_counts_skips_as_passed_and_ignores_backward_moves_and_merged_history(
    engine: Engine, clock: FrozenClock, history: dict[str, int]
) -> None:
    conv = table(funnel(engine, clock), "conversion")
    got = {k: (v["entered"], v["converted"], v["rate"]) for k, v in conv.items()}
    assert got == {
        # a skipped nurturing: it passed it and reached it
        "acquired>nurturing": (6, 6, 100.0),
        # a (skip), b and w (merge) reached hot; b's move back does not undo it
        "nurturing>hot": (6, 3, 50.0),
        "hot>meeting": (3, 1, 33.3),
        "meeting>won": (2, 1, 50.0),  # a and p2 entered meeting; p2 won
    }
    previous = {k: (v["previous_entered"], v["previous_converted"]) for k, v in conv.items()}
    assert previous == {
        "acquired>nurturing": (3, 3),
        "nurturing>hot": (3, 2),
        "hot>meeting": (2, 0),  # p2 reached meeting only in March
        "meeting>won": (0, 0),
    }
    assert conv["meeting>won"]["previous_rate"] is None
    assert conv["nurturing>hot"]["change"] == round(50.0 - 66.7, 1)


def test_reach_counts_any_later_stage_from_each_cohort(
    engine: Engine, clock: FrozenClock, history: dict[str, int]
) -> None:
    reach = table(funnel(engine, clock), "reach")
    got = {k: (v["entered"], v["converted"]) for k, v in reach.items()}
    assert len(got) == 10  # every pair of the five stages of the line
    assert got["acquired>hot"] == (6, 3)  # a (skipped nurturing), b, w (merge)
    assert got["acquired>meeting"] == (6, 1)  # a
    assert got["acquired>won"] == (6, 0)  # p2 won, but entered before March
    assert got["nurturing>meeting"] == (6, 1)
    assert got["hot>won"] == (3, 0)
    assert got["meeting>won"] == (2, 1)  # p2


def test_the_bottleneck_is_the_conversion_that_fell_most_named_in_words(
    engine: Engine, clock: FrozenClock, history: dict[str, int]
) -> None:
    # nurturing → hot fell 16.7 points; hot → meeting rose from 0 to 33.3
    assert funnel(engine, clock).notes == ["育成 → ホット化 の転換率が 66.7% から 50% に低下"]
    assert funnel(engine, clock, locale="en").notes == [
        "Nurturing → Hot (MQL) conversion fell from 66.7% to 50%"
    ]


def test_a_target_rate_names_the_transition_furthest_below_it(
    engine: Engine, clock: FrozenClock, history: dict[str, int]
) -> None:
    # rates 100, 50, 33.3, 50 against 60: hot → meeting is 26.7 points short
    result = funnel(engine, clock, options={"target": "60"}, locale="en")
    assert result.notes == [
        "Hot (MQL) → Meeting (SQL) conversion is 33.3%, below the target of 60%"
    ]
    met = funnel(engine, clock, options={"target": "30"}, locale="en")
    assert met.notes == ["Every conversion meets the target of 30%"]


def test_time_in_stage_counts_spells_left_during_the_period(
    engine: Engine, clock: FrozenClock, history: dict[str, int]
) -> None:
    stages = table(funnel(engine, clock), "stages")
    # acquired left in March: a 1, b 2, c 2, d 30 days 22.5 hours, w 7, g 1
    d_days = 30 + 22.5 / 24
    assert stages["acquired"]["exits"] == 6
    assert stages["acquired"]["median_days"] == 2.0
    assert stages["acquired"]["p90_days"] == round(d_days, 2)  # 6th of 6 (nearest rank)
    # nurturing: b 2 (Mar 4 → 6), w 3 (Mar 9 → 12), g 4 (→ lost); p2's ended in February
    assert (stages["nurturing"]["median_days"], stages["nurturing"]["p90_days"]) == (3.0, 4.0)
    # hot: b 2, a 7, p2 13 (Feb 20 → Mar 5)
    assert (stages["hot"]["median_days"], stages["hot"]["p90_days"]) == (7.0, 13.0)
    assert (stages["meeting"]["median_days"], stages["meeting"]["p90_days"]) == (15.0, 15.0)
    assert stages["won"]["median_days"] is None


def test_stalled_leads_are_those_in_an_open_stage_beyond_the_threshold(
    engine: Engine, clock: FrozenClock, history: dict[str, int]
) -> None:
    default = table(funnel(engine, clock), "stages")
    # 30 days before the end of March 31st (Tokyo): p3 in nurturing, p1 in hot
    assert {k: v["stalled"] for k, v in default.items()} == {
        "acquired": 0, "nurturing": 1, "hot": 1, "meeting": 0, "won": None, "lost": None,
    }  # fmt: skip
    week = table(funnel(engine, clock, options={"stalled_days": "7"}), "stages")
    # since before March 25th: p3 b c in nurturing (d moved on the 31st), p1 w in hot, a
    assert {k: v["stalled"] for k, v in week.items()} == {
        "acquired": 0, "nurturing": 3, "hot": 2, "meeting": 1, "won": None, "lost": None,
    }  # fmt: skip


def test_cohorts_by_acquisition_month_in_tokyo(
    engine: Engine, clock: FrozenClock, history: dict[str, int]
) -> None:
    period = Period(datetime(2026, 2, 1).date(), datetime(2026, 3, 31).date(), TOKYO)
    cohorts = table(funnel(engine, clock, period=period), "cohorts")
    reached = ["acquired", "nurturing", "hot", "meeting", "won", "lost"]
    assert {m: [r["acquired"]] + [r[k] for k in reached] for m, r in cohorts.items()} == {
        "2026-02": [3, 3, 3, 2, 1, 1, 0],  # p1 p2 p3
        # a b c d w g (d: March 1st in Tokyo); a skipped nurturing, so it counts there; a b w
        # reached hot (w by the merge)
        "2026-03": [6, 6, 6, 3, 1, 0, 1],
    }


def test_a_filter_restricts_the_contacts(
    engine: Engine, clock: FrozenClock, history: dict[str, int]
) -> None:
    result = funnel(engine, clock, filter={"field": "company", "op": "eq", "value": "Acme"})
    conv = table(result, "conversion")
    assert (conv["nurturing>hot"]["entered"], conv["nurturing>hot"]["converted"]) == (2, 2)
    assert table(result, "stages")["acquired"]["entered"] == 2


def test_bad_parameters_are_refused_with_the_offending_part_named(
    engine: Engine, clock: FrozenClock
) -> None:
    with pytest.raises(Invalid, match="ends"):
        Period(datetime(2026, 3, 2).date(), datetime(2026, 3, 1).date(), TOKYO)
    with pytest.raises(NotFound, match="funnel"), engine.connect() as conn:
        run_report(conn, clock, "nope", ReportParams(period=MARCH))
    with pytest.raises(Invalid, match="no_such"):
        funnel(engine, clock, filter={"field": "no_such", "op": "eq", "value": 1})
    with pytest.raises(Invalid, match="stalled_days"):
        funnel(engine, clock, options={"stalled_days": "soon"})
    with pytest.raises(Invalid, match="colour"):
        funnel(engine, clock, options={"colour": "red"})


def test_rest_answers_json_and_csv(admin: TestClient, history: dict[str, int]) -> None:
    answer = admin.get("/api/reports/funnel", params={"from": "2026-03-01", "to": "2026-03-31"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["zone"] == "Asia/Tokyo"
    assert body["notes"] == ["育成 → ホット化 の転換率が 66.7% から 50% に低下"]
    flt = json.dumps({"field": "company", "op": "eq", "value": "Acme"})
    answer = admin.get(
        "/api/reports/funnel",
        params={"from": "2026-03-01", "to": "2026-03-31", "filter": flt, "format": "csv",
                "stalled_days": "7"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0][:4] == ["stages", "stage", "name", "contacts_at_end"]
    acquired = next(r for r in rows if r[1:2] == ["acquired"])
    assert acquired[4] == "2"  # entered: a and b


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"from": "2026-03-31", "to": "2026-03-01"}, 422, "invalid_period"),
        ({"from": "2026-02-30", "to": "2026-03-01"}, 422, "invalid_date"),
        ({"from": "2026-03-01", "to": "2026-03-31", "filter": "{nope"}, 422, "invalid_filter"),
        ({"from": "2026-03-01", "to": "2026-03-31",
          "filter": '{"field": "no_such", "op": "eq", "value": 1}'}, 422, None),
        ({"from": "2026-03-01", "to": "2026-03-31", "stalled_days": "0"}, 422, "invalid_option"),
    ],
)  # fmt: skip
def test_rest_refuses_bad_input(
    admin: TestClient, params: dict[str, str], status: int, code: str | None
) -> None:
    answer = admin.get("/api/reports/funnel", params=params)
    assert answer.status_code == status, answer.text
    if code is not None:
        assert answer.json()["error"]["code"] == code
    else:
        assert "no_such" in answer.json()["error"]["message"]


def test_rest_unknown_report_is_404(admin: TestClient) -> None:
    answer = admin.get("/api/reports/nope", params={"from": "2026-03-01", "to": "2026-03-31"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "unknown_report"


def test_rest_needs_an_admin_key(client: TestClient, ingest_key: str) -> None:
    params = {"from": "2026-03-01", "to": "2026-03-31"}
    assert client.get("/api/reports/funnel", params=params).status_code == 401
    answer = client.get(
        "/api/reports/funnel", params=params, headers={"Authorization": f"Bearer {ingest_key}"}
    )
    assert answer.status_code == 403


def test_cli_prints_tables_csv_and_errors(
    db_url: str, history: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EKIDEN_DATABASE_URL", db_url)
    monkeypatch.setenv("EKIDEN_SECRET_KEY", "test-secret-key-" + "x" * 32)
    runner = CliRunner()
    shown = runner.invoke(
        cli_app, ["report", "funnel", "--from", "2026-03-01", "--to", "2026-03-31",
                  "--locale", "en"],
    )  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert "Nurturing → Hot (MQL) conversion fell" in shown.output
    assert "conversion" in shown.output
    as_csv = runner.invoke(
        cli_app, ["report", "funnel", "--from", "2026-03-01", "--to", "2026-03-31", "--csv",
                  "-o", "stalled_days=7"],
    )  # fmt: skip
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.output.startswith("stages,stage,name,contacts_at_end")
    bad = runner.invoke(cli_app, ["report", "funnel", "--from", "2026-04-01", "--to", "2026-03-01"])
    assert bad.exit_code == 1
    assert "before it starts" in bad.output
    unknown = runner.invoke(
        cli_app, ["report", "nope", "--from", "2026-03-01", "--to", "2026-03-31"]
    )
    assert unknown.exit_code == 1
    assert "no report named 'nope'" in unknown.output


def test_reopening_from_lost_crosses_only_stages_after_the_place_held_before(
    engine: Engine, clock: FrozenClock
) -> None:
    h = History(engine, clock)
    one = h.contact("h@example.jp", tokyo(5, 2))
    h.move(one, "nurturing", tokyo(5, 3))
    h.move(one, "lost", tokyo(5, 4))
    h.move(one, "hot", tokyo(5, 6))  # reopened past its place (nurturing): crosses into hot
    two = h.contact("j@example.jp", tokyo(5, 2))
    h.move(two, "hot", tokyo(5, 3))
    h.move(two, "lost", tokyo(5, 4))
    h.move(two, "nurturing", tokyo(5, 5))  # reopened behind its place (hot): crosses nothing
    h.move(two, "hot", tokyo(5, 7))
    clock.set(tokyo(6, 10))
    may = Period(datetime(2026, 5, 1).date(), datetime(2026, 5, 31).date(), TOKYO)
    result = funnel(engine, clock, period=may)
    conv = {k: (v["entered"], v["converted"]) for k, v in table(result, "conversion").items()}
    assert conv == {
        "acquired>nurturing": (2, 2),
        "nurturing>hot": (2, 2),
        "hot>meeting": (2, 0),
        "meeting>won": (0, 0),
    }
    stages = table(result, "stages")
    assert {k: v["entered"] for k, v in stages.items()} == {
        "acquired": 2, "nurturing": 2, "hot": 2, "meeting": 0, "won": 0, "lost": 2,
    }  # fmt: skip
    # lost for 2 days (h) and 1 day (j); nurturing 1 day (h) and 2 days (j)
    assert (stages["lost"]["median_days"], stages["lost"]["p90_days"]) == (1.5, 2.0)
    assert (stages["nurturing"]["median_days"], stages["nurturing"]["p90_days"]) == (1.5, 2.0)
    cohort = table(result, "cohorts")["2026-05"]
    assert [cohort[k] for k in ("acquired", "nurturing", "hot", "meeting", "lost")] == [
        2,
        2,
        2,
        0,
        2,
    ]


def test_p90_is_the_nearest_rank() -> None:
    assert p90([float(v) for v in range(1, 31)]) == 27.0  # ceil(0.9 * 30) = 27
    assert p90([float(v) for v in range(1, 11)]) == 9.0
    assert p90([5.0]) == 5.0
