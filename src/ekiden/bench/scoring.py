"""``ekiden bench scoring``: full recompute of two scores for the whole generated population
against a hand-written SQL aggregate computing the same values, and the incremental latency
from an event's commit to the contact's new score with the worker running.

Everything runs in one process on a scratch database, so the figures compare like with like;
medians over repeats are reported.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, text

from ekiden.bench.population import generate
from ekiden.bench.scratch import scratch_database
from ekiden.clock import FrozenClock, SystemClock
from ekiden.config import Settings, load_settings
from ekiden.db import create_db_engine
from ekiden.scoring.definitions import create_score
from ekiden.scoring.models import ScoreIn
from ekiden.scoring.service import recompute_scores
from ekiden.scoring.tables import contact_scores, score_awards, score_history
from ekiden.segments.tables import dirty_contacts
from ekiden.tracking.events import NewEvent, record_events
from ekiden.worker import Worker


def _page(key: str, prefix: str, points: float, **extra: Any) -> dict[str, Any]:
    where = [{"property": "path", "op": "starts_with", "value": prefix}]
    return {"key": key, "points": points, "event": {"event": "page", "where": where}, **extra}


BEHAVIOUR: dict[str, Any] = {
    "key": "behaviour",
    "name": "bench behaviour",
    "max_points": 100,
    "rules": [
        _page("pricing", "/pricing", 3, cap_points=9, cap_days=7, half_life_days=30),
        _page("product-detail", "/products/", 5, cap_points=10, cap_days=7, half_life_days=30),
        _page("careers", "/careers", -3),
        {"key": "email-open", "points": 1, "expires_after_days": 90,
         "event": {"event": "email_opened"}},
        {"key": "document-b", "points": 2, "event": {"event": "form_submitted", "where": [
            {"property": "form", "op": "eq", "value": "document-b"}]}},
        {"key": "unsubscribed", "points": -10,
         "when": {"field": "unsubscribed", "op": "eq", "value": True}},
    ],
}  # fmt: skip
FIT: dict[str, Any] = {
    "key": "fit",
    "name": "bench fit",
    "rules": [
        {"key": "bucho", "points": 5,
         "when": {"field": "job_title", "op": "in", "value": ["部長", "本部長"]}},
        {"key": "kacho", "points": 3, "when": {"field": "job_title", "op": "eq", "value": "課長"}},
    ],
}  # fmt: skip

# What an engineer would write by hand for the same values: one statement per score,
# computing (not storing) every contact's value. Caps by row_number() per 7-day period
# (Asia/Tokyo), decay by power(); the population has no forms with a "form" property, so the
# document-b rule awards nothing in either.
HAND_BEHAVIOUR = """
WITH ev AS (
  SELECT e.id, e.contact_id, e.occurred_at, {epoch} AS t,
    CASE WHEN e.type = 'email_opened' THEN 'open'
         WHEN e.path LIKE '/pricing%' THEN 'pricing'
         WHEN e.path LIKE '/products/%' THEN 'product'
         ELSE 'careers' END AS r
  FROM events e
  WHERE e.machine = {false} AND e.contact_id IS NOT NULL AND e.occurred_at <= :now
    AND (e.type = 'email_opened' OR (e.type = 'page' AND (e.path LIKE '/pricing%'
         OR e.path LIKE '/products/%' OR e.path LIKE '/careers%')))
), ranked AS (
  SELECT contact_id, r, t, row_number() OVER (
    PARTITION BY contact_id, r, floor((t + :shift) / 604800.0) ORDER BY occurred_at, id) AS n
  FROM ev
), points AS (
  SELECT contact_id, CASE r
    WHEN 'pricing' THEN (CASE WHEN n * 3 <= 9 THEN 3 ELSE 9 - (n - 1) * 3 END)
      * power(0.5, (:now_epoch - t) / (30 * 86400.0))
    WHEN 'product' THEN (CASE WHEN n * 5 <= 10 THEN 5 ELSE 10 - (n - 1) * 5 END)
      * power(0.5, (:now_epoch - t) / (30 * 86400.0))
    WHEN 'careers' THEN -3
    ELSE CASE WHEN :now_epoch - t >= 90 * 86400 THEN 0 ELSE 1 END END AS p
  FROM ranked
  WHERE r NOT IN ('pricing', 'product') OR (n - 1) * (CASE r WHEN 'pricing' THEN 3 ELSE 5 END)
        < (CASE r WHEN 'pricing' THEN 9 ELSE 10 END)
  UNION ALL
  SELECT id, -10 FROM contacts WHERE unsubscribed_at IS NOT NULL AND merged_into_id IS NULL
)
SELECT contact_id, CASE WHEN sum(p) > 100 THEN 100 ELSE sum(p) END AS value
FROM points GROUP BY contact_id HAVING abs(sum(p)) > 0.000001
"""
HAND_FIT = """
SELECT id, CASE WHEN job_title = '課長' THEN 3 ELSE 5 END FROM contacts
WHERE merged_into_id IS NULL AND job_title IN ('部長', '本部長', '課長')
"""


@dataclass
class ScoringReport:
    backend: str
    contacts: int
    events: int
    generate_seconds: float
    scored: dict[str, int] = field(default_factory=dict)
    awards: int = 0
    full_recompute: list[float] = field(default_factory=list)
    unchanged_recompute: list[float] = field(default_factory=list)
    hand_written: list[float] = field(default_factory=list)
    incremental: list[float] = field(default_factory=list)
    incremental_missed: int = 0

    @property
    def full_median(self) -> float:
        return statistics.median(self.full_recompute)

    @property
    def hand_median(self) -> float:
        return statistics.median(self.hand_written)

    @property
    def incremental_p95(self) -> float | None:
        if len(self.incremental) < 2:
            return self.incremental[0] if self.incremental else None
        return statistics.quantiles(self.incremental, n=20, method="inclusive")[-1]


def _stamp(engine: Engine, moment: datetime) -> object:
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    if engine.dialect.name == "sqlite":
        return naive.strftime("%Y-%m-%d %H:%M:%S.%f")
    return naive


def _hand_written(engine: Engine, now: datetime) -> tuple[float, dict[tuple[int, str], float]]:
    postgres = engine.dialect.name == "postgresql"
    epoch = (
        "extract(epoch from e.occurred_at)::float8"
        if postgres
        else "CAST(strftime('%s', e.occurred_at) AS INTEGER)"
    )
    behaviour = HAND_BEHAVIOUR.format(epoch=epoch, false="false" if postgres else "0")
    params = {"now": _stamp(engine, now), "now_epoch": now.timestamp(), "shift": 9 * 3600}
    found: dict[tuple[int, str], float] = {}
    with engine.connect() as conn:
        started = time.perf_counter()
        for key, query in (("behaviour", behaviour), ("fit", HAND_FIT)):
            for contact_id, value in conn.execute(text(query), params):
                found[(contact_id, key)] = float(value)
        took = time.perf_counter() - started
    return took, found


def _stored(engine: Engine) -> dict[tuple[int, str], float]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(contact_scores.c.contact_id, contact_scores.c.score_key, contact_scores.c.value)
        )
        return {(r.contact_id, r.score_key): float(r.value) for r in rows}


def _same(stored: dict[tuple[int, str], float], hand: dict[tuple[int, str], float]) -> None:
    if stored.keys() != hand.keys():
        raise AssertionError(
            f"{len(stored)} stored values but the hand-written SQL computes {len(hand)}: the "
            "benchmark would compare different results"
        )
    worst = max((abs(stored[k] - hand[k]) for k in stored), default=0.0)
    if worst > 1e-3:
        raise AssertionError(f"stored values differ from the hand-written SQL by up to {worst}")


def _measure_incremental(
    engine: Engine, settings: Settings, samples: int, report: ScoringReport
) -> None:
    """With the worker running, one form submission (+2) per contact; the latency runs from
    the event's commit to the moment the new score can be read."""
    clock = SystemClock()
    worker = Worker(engine, clock, settings, batch_size=500)
    with engine.begin() as conn:
        conn.execute(delete(dirty_contacts))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), kwargs={"idle_sleep": 0.02})
    thread.start()
    try:
        step = max(report.contacts // max(samples, 1), 1)
        for contact_id in range(1, samples * step + 1, step)[:samples]:
            key = select(contact_scores.c.value).where(
                contact_scores.c.contact_id == contact_id, contact_scores.c.score_key == "behaviour"
            )
            with engine.connect() as conn:
                before = conn.execute(key).scalar_one_or_none() or 0.0
            with engine.begin() as conn:
                record_events(conn, clock, [NewEvent(
                    type="form_submitted", occurred_at=clock.now(), source="api",
                    contact_id=contact_id, properties={"form": "document-b"})])  # fmt: skip
            sent = time.perf_counter()
            deadline = sent + 30
            while time.perf_counter() < deadline:
                with engine.connect() as conn:
                    now_value = conn.execute(key).scalar_one_or_none() or 0.0
                if now_value - before > 1.5 or (before >= 99 and now_value != before):
                    report.incremental.append(time.perf_counter() - sent)
                    break
                time.sleep(0.01)
            else:
                report.incremental_missed += 1
    finally:
        stop.set()
        thread.join(timeout=60)
    report.incremental.sort()


def run_scoring_bench(
    database_url: str, *, contacts: int, events_count: int, repeat: int = 3, samples: int = 40
) -> ScoringReport:
    with scratch_database(database_url) as url:
        engine = create_db_engine(url)
        try:
            return _run(engine, url, contacts, events_count, repeat, samples)
        finally:
            engine.dispose()


def _run(
    engine: Engine, url: str, contacts: int, events_count: int, repeat: int, samples: int
) -> ScoringReport:
    now = SystemClock().now()
    clock = FrozenClock(now)  # recompute and the hand-written SQL decay to the same moment
    started = time.perf_counter()
    generate(engine, contacts=contacts, events=events_count, now=now)
    report = ScoringReport(
        backend=engine.dialect.name,
        contacts=contacts,
        events=events_count,
        generate_seconds=time.perf_counter() - started,
    )
    settings = load_settings(database_url=url)
    with engine.begin() as conn:
        for data in (BEHAVIOUR, FIT):
            create_score(conn, clock, ScoreIn.model_validate(data), settings.zone)
    for _ in range(repeat):
        tables = (score_awards, contact_scores, score_history, dirty_contacts)
        with engine.begin() as conn:  # from nothing: the first build after a rule change
            for table in tables:
                conn.execute(delete(table))
        if engine.dialect.name == "postgresql":
            # what autovacuum does between rebuilds on a live server: without it every
            # repeat would insert through the previous repeat's dead index entries
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"VACUUM ANALYZE {', '.join(t.name for t in tables)}")
        began = time.perf_counter()
        with engine.begin() as conn:
            recompute_scores(conn, clock, settings)
        report.full_recompute.append(time.perf_counter() - began)
        began = time.perf_counter()
        with engine.begin() as conn:
            recompute_scores(conn, clock, settings)
        report.unchanged_recompute.append(time.perf_counter() - began)
        took, expected = _hand_written(engine, now)
        report.hand_written.append(took)
        stored = _stored(engine)
        _same(stored, expected)
        report.scored = {key: sum(1 for _, k in stored if k == key) for key in ("behaviour", "fit")}
    with engine.connect() as conn:
        report.awards = conn.execute(select(func.count()).select_from(score_awards)).scalar_one()
    _measure_incremental(engine, settings, samples, report)
    return report
