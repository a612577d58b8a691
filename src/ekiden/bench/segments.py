"""``ekiden bench segments``: full refresh of a behavioural segment against a hand-written
query for the same set, and freshness from an event's ingestion to ``segment_entered``.

Everything runs in one process on a scratch database, so the figures compare like with like
on the same (shared, noisy) machine; medians over repeats are reported.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select, text, update

from ekiden.bench.population import generate
from ekiden.bench.scratch import scratch_database
from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.segments.models import SegmentIn
from ekiden.segments.service import create_segment, rebuild_segment
from ekiden.segments.tables import segment_members, segments
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events
from ekiden.worker import Worker

SEGMENT = {
    "all": [
        {"field": "job_title", "op": "in", "value": ["部長", "本部長"]},
        {
            "event": "page",
            "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}],
            "min": 2,
            "within_days": 30,
        },
        {"field": "unsubscribed", "op": "eq", "value": False},
    ]
}

# What an engineer would write by hand for the same set, in its two natural shapes; the
# faster one is the baseline.
HAND_WRITTEN_GROUPED = """
SELECT c.id FROM contacts c
WHERE c.merged_into_id IS NULL AND c.job_title IN ('部長', '本部長') AND c.unsubscribed_at IS NULL
  AND c.id IN (
    SELECT e.contact_id FROM events e
    WHERE e.type = 'page' AND e.path LIKE '/pricing%' AND e.machine = {false}
      AND e.occurred_at >= :since AND e.occurred_at <= :now
    GROUP BY e.contact_id HAVING count(*) >= 2)
"""
HAND_WRITTEN_CORRELATED = """
SELECT c.id FROM contacts c
WHERE c.merged_into_id IS NULL AND c.job_title IN ('部長', '本部長') AND c.unsubscribed_at IS NULL
  AND (SELECT count(*) FROM events e
       WHERE e.contact_id = c.id AND e.type = 'page' AND e.path LIKE '/pricing%'
         AND e.machine = {false} AND e.occurred_at >= :since AND e.occurred_at <= :now) >= 2
"""


@dataclass
class SegmentsReport:
    backend: str
    contacts: int
    events: int
    generate_seconds: float
    members: int
    full_refresh: list[float] = field(default_factory=list)
    unchanged_refresh: list[float] = field(default_factory=list)
    hand_written: list[float] = field(default_factory=list)
    freshness: list[float] = field(default_factory=list)
    freshness_missed: int = 0

    @property
    def full_median(self) -> float:
        return statistics.median(self.full_refresh)

    @property
    def hand_median(self) -> float:
        return statistics.median(self.hand_written)

    @property
    def freshness_p95(self) -> float | None:
        if len(self.freshness) < 2:
            return self.freshness[0] if self.freshness else None
        return statistics.quantiles(self.freshness, n=20, method="inclusive")[-1]


def _stamp(engine: Engine, moment: datetime) -> object:
    naive = moment.astimezone(UTC).replace(tzinfo=None)
    if engine.dialect.name == "sqlite":
        return naive.strftime("%Y-%m-%d %H:%M:%S.%f")
    return naive


def _time_hand_written(engine: Engine, now: datetime) -> tuple[float, set[int]]:
    false = "false" if engine.dialect.name == "postgresql" else "0"
    params = {"since": _stamp(engine, now - timedelta(days=30)), "now": _stamp(engine, now)}
    best: tuple[float, set[int]] | None = None
    for query in (HAND_WRITTEN_GROUPED, HAND_WRITTEN_CORRELATED):
        with engine.connect() as conn:
            started = time.perf_counter()
            ids = set(conn.execute(text(query.format(false=false)), params).scalars())
            took = time.perf_counter() - started
        if best is None or took < best[0]:
            best = (took, ids)
    assert best is not None
    return best


def _measure_freshness(
    engine: Engine, database_url: str, samples: int, report: SegmentsReport
) -> None:
    """Push contacts over the threshold one by one with the worker running; the latency is
    from the event's commit time (received_at) to the segment_entered event's time."""
    settings = load_settings(database_url=database_url)
    clock = SystemClock()
    worker = Worker(engine, clock, settings, batch_size=500)
    worker.run_once()  # initial time-window refresh; the measurement starts when idle
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), kwargs={"idle_sleep": 0.05})
    thread.start()
    try:
        with engine.connect() as conn:
            candidates = list(
                conn.execute(
                    text(
                        "SELECT c.id FROM contacts c WHERE c.job_title = '部長' "
                        "AND c.unsubscribed_at IS NULL AND c.id NOT IN "
                        "(SELECT contact_id FROM segment_members) ORDER BY c.id LIMIT :n"
                    ),
                    {"n": samples},
                ).scalars()
            )
        sent: dict[int, datetime] = {}
        for contact_id in candidates:
            now = clock.now()
            with engine.begin() as conn:
                record_events(
                    conn,
                    clock,
                    [
                        NewEvent(type="page", occurred_at=now, source="api",
                                 contact_id=contact_id, path="/pricing")
                        for _ in range(2)
                    ],
                )  # fmt: skip
            sent[contact_id] = now
            time.sleep(0.05)
        deadline = time.monotonic() + 60
        entered: dict[int, datetime] = {}
        while time.monotonic() < deadline and len(entered) < len(sent):
            with engine.connect() as conn:
                rows = conn.execute(
                    select(events.c.contact_id, events.c.received_at).where(
                        events.c.type == "segment_entered",
                        events.c.contact_id.in_(list(sent)),
                    )
                )
                entered.update({r.contact_id: r.received_at for r in rows})
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    report.freshness = sorted((entered[c] - sent[c]).total_seconds() for c in sent if c in entered)
    report.freshness_missed = len(sent) - len(entered)


def run_segments_bench(
    database_url: str,
    *,
    contacts: int,
    events_count: int,
    repeat: int = 3,
    freshness_samples: int = 40,
) -> SegmentsReport:
    with scratch_database(database_url) as url:
        engine = create_db_engine(url)
        try:
            return _run(engine, url, contacts, events_count, repeat, freshness_samples)
        finally:
            engine.dispose()


def _run(
    engine: Engine, url: str, contacts: int, events_count: int, repeat: int, samples: int
) -> SegmentsReport:
    clock = SystemClock()
    started = time.perf_counter()
    generate(engine, contacts=contacts, events=events_count, now=clock.now())
    report = SegmentsReport(
        backend=engine.dialect.name,
        contacts=contacts,
        events=events_count,
        generate_seconds=time.perf_counter() - started,
        members=0,
    )
    zone = load_settings(database_url=url).zone
    with engine.begin() as conn:
        create_segment(conn, clock, SegmentIn(slug="hot-bucho", name="bench", filter=SEGMENT), zone)
    for _ in range(repeat):
        with engine.begin() as conn:  # start from empty membership: a first build
            conn.execute(delete(segment_members))
            conn.execute(
                delete(events).where(events.c.type.in_(["segment_entered", "segment_exited"]))
            )
            conn.execute(update(segments).values(member_count=0, built_version=0))
        began = time.perf_counter()
        with engine.begin() as conn:
            rebuild_segment(conn, clock, "hot-bucho", zone)
        report.full_refresh.append(time.perf_counter() - began)
        began = time.perf_counter()
        with engine.begin() as conn:
            rebuild_segment(conn, clock, "hot-bucho", zone)
        report.unchanged_refresh.append(time.perf_counter() - began)
        took, expected = _time_hand_written(engine, clock.now())
        report.hand_written.append(took)
        with engine.connect() as conn:
            stored = set(conn.execute(select(segment_members.c.contact_id)).scalars())
        if stored != expected:
            raise AssertionError(
                f"the segment holds {len(stored)} contacts but the hand-written query finds "
                f"{len(expected)}: the benchmark would compare different sets"
            )
        report.members = len(stored)
    _measure_freshness(engine, url, samples, report)
    return report
