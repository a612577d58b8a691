"""`ekiden demo` builds a working demo on a fresh embedded database (the README's first
command runs exactly this, then serves it): contacts with history, segments, scores, stage
moves, hot-lead alerts and call tasks made by the worker in simulated time, sales outcomes
with deal values, and the example journeys as drafts."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from typer.testing import CliRunner

from ekiden.analytics.reports import Period, ReportParams, ReportResult, run_report
from ekiden.cli import app
from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.contacts.tables import contacts
from ekiden.db import create_db_engine
from ekiden.demo.run import announce
from ekiden.journeys.simulate import simulate
from ekiden.journeys.tables import journeys
from ekiden.lifecycle.tables import handoffs, sales_tasks, stage_history
from ekiden.scoring.definitions import list_scores
from ekiden.scoring.service import explain, leaders
from ekiden.segments.tables import segments
from ekiden.tracking.tables import events
from ekiden.web.app import create_app


def _rows(result: ReportResult, name: str) -> list[dict[str, object]]:
    table = next(t for t in result.tables if t.name == name)
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def _check_scores(conn: Connection) -> None:
    assert {s.key for s in list_scores(conn)} == {"behaviour", "fit"}
    assert all(s.built for s in list_scores(conn))
    top = leaders(conn, "behaviour", limit=5)
    assert top
    assert top[0][1] > 0
    explained = explain(conn, SystemClock(), top[0][0])
    behaviour = next(s for s in explained.scores if s.key == "behaviour")
    assert any(a.kind == "event" and a.points > 0 for a in behaviour.awards)
    fit = leaders(conn, "fit", limit=1)
    assert fit
    assert fit[0][1] >= 5  # 部長 +5, 課長 +3, a good-fit industry +3


def test_demo_builds_the_whole_product_in_simulated_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EKIDEN_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["demo", "--build-only", "--visitors", "60", "--weeks", "3"])
    assert result.exit_code == 0, result.output
    assert "admin key: ek_ad_" in result.output
    url = f"sqlite:///{tmp_path / 'ekiden-demo.db'}"
    engine = create_db_engine(url)
    with engine.connect() as conn:
        known = conn.execute(select(func.count()).select_from(contacts)).scalar_one()
        dwell = conn.execute(
            select(func.count()).where(events.c.type == "page_dwell", events.c.dwell_ms > 0)
        ).scalar_one()
        attributed = conn.execute(
            select(func.count()).where(events.c.type == "page", events.c.contact_id.is_not(None))
        ).scalar_one()
        built = conn.execute(select(segments.c.slug, segments.c.built_version)).all()
        first_event, last_event = conn.execute(
            select(func.min(events.c.occurred_at), func.max(events.c.occurred_at))
        ).one()
        _check_scores(conn)
        moves = conn.execute(
            select(stage_history.c.to_stage, stage_history.c.moved_at, stage_history.c.source,
                   stage_history.c.deal_value, stage_history.c.currency)
            .where(stage_history.c.kind == "lifecycle")
        ).all()  # fmt: skip
        raised = conn.execute(select(handoffs.c.raised_at, handoffs.c.owner_id)).all()
        tasks = conn.execute(select(sales_tasks.c.status, sales_tasks.c.created_at)).all()
        drafts = conn.execute(select(journeys.c.key, journeys.c.status)).all()
    engine.dispose()
    assert known >= 40  # identified visitors plus 40 imported business cards
    assert dwell > 0
    assert attributed > 0  # anonymous page views joined the visitors who filled in a form
    assert {slug for slug, _ in built} == {"hot-bucho", "case-study-readers", "webinar-registrants"}
    assert all(version >= 1 for _, version in built)

    # the worker moved contacts on the simulated days, not all at build time
    hot = [m for m in moves if m.to_stage == "hot" and m.source == "rule"]
    assert len(hot) >= 3
    assert len({m.moved_at.date() for m in hot}) >= 3
    assert all(first_event <= m.moved_at <= last_event + timedelta(days=1) for m in hot)
    assert max(m.moved_at for m in moves) - min(m.moved_at for m in moves) > timedelta(days=7)
    # sales booked meetings and closed deals, with values in JPY, at simulated times
    meetings = [m for m in moves if m.to_stage == "meeting" and m.source == "api"]
    won = [m for m in moves if m.to_stage == "won"]
    assert meetings
    assert won
    assert all(m.deal_value and m.deal_value > 0 and m.currency == "JPY" for m in won)
    assert min(m.moved_at for m in meetings) < max(m.moved_at for m in won)
    assert all(m.moved_at <= last_event + timedelta(days=1) for m in meetings + won)
    # alerts gave owners by round robin and put call tasks on the list
    assert {owner for _, owner in raised} == {1, 2}
    assert len({at.date() for at, _ in raised}) >= 3
    assert {"open", "done"} <= {status for status, _ in tasks}
    # the example journeys, ready to look at and simulate, not running
    assert {key for key, _ in drafts} >= {"survey-sample", "engagement-followup", "missed-call"}
    assert {status for _, status in drafts} == {"draft"}

    settings = load_settings(database_url=url)
    period = Period(first_event.astimezone(settings.zone).date(),
                    last_event.astimezone(settings.zone).date(), settings.zone)  # fmt: skip
    engine = create_db_engine(url)
    with engine.connect() as conn:
        funnel = run_report(conn, SystemClock(), "funnel", ReportParams(period=period))
        # the traffic fills the example journeys' forms: a dry run shows who would enter
        for key in ("survey-sample", "engagement-followup", "missed-call"):
            assert simulate(conn, SystemClock(), settings.zone, key=key, days=30).entered > 0
        campaigns = run_report(conn, SystemClock(), "campaigns", ReportParams(period=period))
    engine.dispose()
    entered = {row["stage"]: row["entered"] for row in _rows(funnel, "stages")}
    assert all(entered[stage] for stage in ("acquired", "nurturing", "hot", "meeting", "won"))
    by_campaign = _rows(campaigns, "campaigns")
    assert sum(int(str(row["won"])) for row in by_campaign) == len(won)
    assert sum(float(str(row["revenue"])) for row in by_campaign) == sum(m.deal_value for m in won)

    _follow_the_announcement(result.output, url, monkeypatch, capsys)

    again = CliRunner().invoke(app, ["demo", "--build-only"])
    assert again.exit_code == 0
    assert "exists already" in again.output


def _follow_the_announcement(
    output: str, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every "Try:" line of the announcement works on the demo as built: the API calls answer
    200 with something in them, the report command prints the funnel with a won stage."""
    admin = re.search(r"admin key: (\S+)", output)
    assert admin is not None
    settings = load_settings(database_url=url)
    capsys.readouterr()
    announce(settings, "127.0.0.1", 8000, admin.group(1), "ek_in_unused")
    lines = capsys.readouterr().out.splitlines()
    calls = [
        re.search(r"curl -s .* http://127\.0\.0\.1:8000(/api/\S+?)\"?(\s|$)", line)
        for line in lines
    ]
    paths = [c.group(1) for c in calls if c is not None]
    assert any(re.fullmatch(r"/api/contacts/\d+/scores", p) for p in paths)
    assert "/api/tasks" in paths
    engine = create_db_engine(url)
    with TestClient(create_app(settings, engine=engine)) as client:
        for path in paths:
            answer = client.get(path, headers={"Authorization": f"Bearer {admin.group(1)}"})
            assert answer.status_code == 200, (path, answer.text)
            assert answer.json(), path
        tasks = client.get("/api/tasks", headers={"Authorization": f"Bearer {admin.group(1)}"})
        assert tasks.json()["items"]
    engine.dispose()
    report = next(line for line in lines if "report funnel" in line).split()
    assert report[0] == "EKIDEN_DATABASE_URL=sqlite:///ekiden-demo.db"
    monkeypatch.setenv("EKIDEN_DATABASE_URL", url)
    shown = CliRunner().invoke(app, report[2:])
    assert shown.exit_code == 0, shown.output
    assert "won" in shown.output
    monkeypatch.delenv("EKIDEN_DATABASE_URL")
