"""``ekiden bench training``: predictive training on a generated population.

The measured pipeline is ``training.train`` as the API and the CLI run it: outcomes from the
filter language, feature extraction from the events table, a hold-out evaluation, the final
fit, storing the model and scoring every open lead. The baseline, measured in the same run,
fits the same estimator on the already-encoded feature matrix: the floor that the work
around the estimator is compared with.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from sklearn.linear_model import LogisticRegression
from sqlalchemy import exists, insert, literal, select, update
from threadpoolctl import threadpool_limits

from ekiden.bench.population import generate
from ekiden.bench.scratch import scratch_database
from ekiden.clock import FrozenClock
from ekiden.contacts.tables import contact_tags, contacts
from ekiden.db import create_db_engine
from ekiden.db.schema import UTCDateTime
from ekiden.predictive.features import contact_features
from ekiden.predictive.model import Table, fit_model
from ekiden.predictive.outcomes import OutcomeSpec, classify
from ekiden.predictive.training import train
from ekiden.tracking.tables import events

SPEC = OutcomeSpec(outcome={"tag": "won"}, lost={"tag": "lost"}, window_days=90)


@dataclass
class TrainingReport:
    backend: str
    contacts: int
    events: int
    generate_seconds: float
    converted: int = 0
    not_converted: int = 0
    scored: int = 0
    auc: float = 0.0
    pipeline: list[float] = field(default_factory=list)
    # this process's CPU time for the pipeline: on a busy shared machine wall time mostly
    # measures the neighbours (PostgreSQL's own work is not included)
    pipeline_cpu: list[float] = field(default_factory=list)
    features: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)

    @property
    def pipeline_median(self) -> float:
        return statistics.median(self.pipeline)

    @property
    def features_median(self) -> float:
        return statistics.median(self.features)

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline)


def mark_outcomes(url: str, now: datetime) -> None:
    """Two thirds of the contacts known for 200 days; won: /pricing readers (one in five),
    部長 (one in four) and a little noise; lost: one in eleven of the rest."""
    engine = create_db_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(contacts)
                .where(contacts.c.id % 3 != 0)
                .values(created_at=now - timedelta(days=200))
            )
            pricing = exists().where(
                events.c.contact_id == contacts.c.id,
                events.c.path == "/pricing",
                events.c.machine.is_(False),
            )
            won = (
                (pricing & (contacts.c.id % 5 == 0))
                | ((contacts.c.job_title == "部長") & (contacts.c.id % 4 == 1))
                | (contacts.c.id % 37 == 0)
            )
            stamp = literal(now, UTCDateTime)
            conn.execute(
                insert(contact_tags).from_select(
                    ["contact_id", "tag", "created_at"],
                    select(contacts.c.id, literal("won"), stamp).where(won),
                )
            )
            conn.execute(
                insert(contact_tags).from_select(
                    ["contact_id", "tag", "created_at"],
                    select(contacts.c.id, literal("lost"), stamp).where(
                        ~won, contacts.c.id % 11 == 0
                    ),
                )
            )
    finally:
        engine.dispose()


def run_training_bench(
    database_url: str, *, contacts_count: int, events_count: int, repeat: int
) -> TrainingReport:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    clock = FrozenClock(now)
    zone = ZoneInfo("Asia/Tokyo")
    with scratch_database(database_url) as url:
        started = time.perf_counter()
        engine = create_db_engine(url)
        try:
            generate(engine, contacts=contacts_count, events=events_count, now=now)
            mark_outcomes(url, now)
            report = TrainingReport(
                backend=engine.dialect.name,
                contacts=contacts_count,
                events=events_count,
                generate_seconds=time.perf_counter() - started,
            )
            for _ in range(repeat):
                began, cpu = time.perf_counter(), time.process_time()
                with engine.begin() as conn:
                    done = train(conn, clock, SPEC, zone)
                report.pipeline.append(time.perf_counter() - began)
                report.pipeline_cpu.append(time.process_time() - cpu)
                report.converted, report.not_converted = done.positives, done.negatives
                report.scored, report.auc = done.scored, done.evaluation.auc
            with engine.connect() as conn:
                outcomes = classify(conn, now, SPEC, zone)
                everyone = sorted(set(outcomes.converted + outcomes.not_converted + outcomes.open))
                for _ in range(repeat):
                    began = time.perf_counter()
                    table = contact_features(conn, now, everyone)
                    report.features.append(time.perf_counter() - began)
            ids, labels = outcomes.labelled()
            at = {cid: i for i, cid in enumerate(everyone)}
            labelled = Table(table.columns, [table.rows[at[cid]] for cid in ids])
            target = np.asarray(labels, dtype=np.int_)
            matrix = fit_model(labelled, target).inputs(labelled)
            for _ in range(repeat):
                began = time.perf_counter()
                with threadpool_limits(limits=1):
                    LogisticRegression(C=1.0, max_iter=2000).fit(matrix, target)
                report.baseline.append(time.perf_counter() - began)
        finally:
            engine.dispose()
    return report
