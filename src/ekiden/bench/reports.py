"""``ekiden bench reports``: each report over the last 365 days on the generated population,
against a plain scan of the period's events measured in the same run.

Everything runs in one process on a scratch database, so the figures compare like with like
on the same (shared, noisy) machine; medians over repeats are reported.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from ekiden.analytics.reports import Period, ReportParams, ReportResult, run_report
from ekiden.bench.population import REPORT_JOURNEY, add_report_history, generate
from ekiden.bench.scratch import scratch_database
from ekiden.clock import FrozenClock, SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.journeys import service
from ekiden.tracking.tables import events

# (report, options, filter) timed in the benchmark
CASES: list[tuple[str, dict[str, str], dict[str, Any] | None]] = [
    ("funnel", {}, None),
    ("intent", {}, None),
    ("prospects", {}, None),
    ("campaigns", {}, None),
    ("journey", {"journey": str(REPORT_JOURNEY["key"])}, None),
    ("funnel", {}, {"field": "job_title", "op": "eq", "value": "部長"}),
]
TARGET_SECONDS = 2.0


@dataclass
class ReportTiming:
    name: str
    filtered: bool
    seconds: list[float] = field(default_factory=list)
    rows: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass
class ReportsBench:
    backend: str
    contacts: int
    events: int
    generate_seconds: float
    period: Period
    baseline: list[float] = field(default_factory=list)
    period_events: int = 0
    timings: list[ReportTiming] = field(default_factory=list)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline)


def run_reports_bench(
    database_url: str, *, contacts: int, events_count: int, repeat: int = 3
) -> ReportsBench:
    with scratch_database(database_url) as url:
        engine = create_db_engine(url)
        try:
            return _run(engine, url, contacts, events_count, repeat)
        finally:
            engine.dispose()


def _rows(result: ReportResult) -> int:
    return sum(len(t.rows) for t in result.tables)


def _run(engine: Engine, url: str, contacts: int, events_count: int, repeat: int) -> ReportsBench:
    now = SystemClock().now()
    settings = load_settings(database_url=url)
    zone = settings.zone
    started = time.perf_counter()
    generate(engine, contacts=contacts, events=events_count, now=now)
    clock = FrozenClock(now - timedelta(days=400))  # the journey exists before the history
    with engine.begin() as conn:
        service.create_journey(conn, clock, REPORT_JOURNEY, zone)
        journey_id = service.journey_row(conn, str(REPORT_JOURNEY["key"])).id
    add_report_history(engine, now=now, journey_id=journey_id)
    today = now.astimezone(zone).date()
    period = Period(today - timedelta(days=364), today, zone)
    bench = ReportsBench(
        backend=engine.dialect.name,
        contacts=contacts,
        events=events_count,
        generate_seconds=time.perf_counter() - started,
        period=period,
    )
    clock = FrozenClock(now)
    count = (
        select(func.count())
        .select_from(events)
        .where(events.c.occurred_at >= period.starts_at, events.c.occurred_at < period.ends_at)
    )
    timings = [ReportTiming(name, flt is not None) for name, _, flt in CASES]
    for _ in range(repeat):
        # the baseline: a plain count of the period's events, in the same run
        with engine.connect() as conn:
            began = time.perf_counter()
            bench.period_events = int(conn.execute(count).scalar_one())
            bench.baseline.append(time.perf_counter() - began)
        for timing, (name, options, flt) in zip(timings, CASES, strict=True):
            params = ReportParams(period=period, filter=flt, options=options, locale="en")
            with engine.connect() as conn:
                began = time.perf_counter()
                result = run_report(conn, clock, name, params)
                timing.seconds.append(time.perf_counter() - began)
            timing.rows = _rows(result)
    bench.timings = timings
    return bench


def describe(bench: ReportsBench) -> list[str]:
    """The figures as lines of text."""
    lines = [
        f"reports benchmark: {bench.backend}, {bench.contacts:,} contacts, "
        f"{bench.events:,} events (generated with stage history, UTM sources, dwell reports "
        f"and journey enrolments in {bench.generate_seconds:.1f} s); period "
        f"{bench.period.first} – {bench.period.last} ({bench.period.zone})",
        f"baseline: count(*) of the period's {bench.period_events:,} events: median "
        f"{bench.baseline_median:.3f} s "
        f"({' / '.join(f'{s:.3f}' for s in bench.baseline)})",
        f"{'report':<22}  {'median s':>9}  {'runs s':<26}  {'x baseline':>10}  "
        f"{'rows':>6}  target {TARGET_SECONDS:g} s",
    ]
    for t in bench.timings:
        label = t.name + (" (filtered)" if t.filtered else "")
        runs = " / ".join(f"{s:.3f}" for s in t.seconds)
        ratio = t.median / bench.baseline_median if bench.baseline_median else float("inf")
        met = "met" if t.median <= TARGET_SECONDS else "NOT met"
        lines.append(
            f"{label:<22}  {t.median:>9.3f}  {runs:<26}  {ratio:>10.1f}  {t.rows:>6}  {met}"
        )
    return lines
