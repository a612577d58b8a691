"""The background worker: everything that happens because time passed or data changed.

Each step is a function a test can call directly; ``run_once`` does all that is due now,
``run_forever`` repeats it. Work is claimed through the database, so any number of workers
may run (PostgreSQL: row locks and SKIP LOCKED; SQLite: one writer at a time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.segments.dirty import claim_dirty
from ekiden.segments.models import Refreshed
from ekiden.segments.service import rebuild_due, refresh_contacts, refresh_time_dependent

log = logging.getLogger("ekiden.worker")

ContactStep = Callable[[Connection, Clock, Settings, Sequence[int]], None]
"""Runs for a batch of changed contacts inside the transaction that claimed them, before
segment memberships are refreshed (so segments see new scores and stages). It must not commit."""

PeriodicStep = Callable[[Engine, Clock, Settings], int]
"""Does one bounded slice of time-driven work in its own transactions and returns how many
items it handled; a positive count means "call me again", zero means "nothing due now"."""


def default_contact_steps() -> list[tuple[str, ContactStep]]:
    """Capabilities plug in here, in the order they must run: a later step sees what an
    earlier one wrote in the same transaction (stages and hand-offs read the new scores)."""
    steps: list[tuple[str, ContactStep]] = []
    from ekiden.scoring.service import score_changed_contacts

    # first: stages, hand-offs and segments read the new scores
    steps.append(("scores", score_changed_contacts))
    from ekiden.lifecycle.step import lifecycle_step

    # stages, then hot-lead hand-offs, from the new scores
    steps.append(("lifecycle", lifecycle_step))
    from ekiden.journeys.triggers import journeys_contact_step

    # last: journeys wake and enrol on the contact as the steps above left it
    steps.append(("journeys", journeys_contact_step))
    return steps


def default_periodic_steps() -> list[tuple[str, PeriodicStep]]:
    """Time-driven work (decay, outbox delivery, journeys), run after the contact batches."""
    steps: list[tuple[str, PeriodicStep]] = []
    from ekiden.scoring.service import recompute_due

    # score decay / expiry and full recomputes after rule changes
    steps.append(("scores", recompute_due))
    from ekiden.lifecycle.rearm import rearm_hot_leads

    # after decay: hot-lead definitions re-arm for contacts that stopped matching over time
    steps.append(("hot_leads", rearm_hot_leads))
    from ekiden.journeys.triggers import journeys_step

    # due enrolments: what they enqueue is delivered by the outbox step below
    steps.append(("journeys", journeys_step))
    from ekiden.messaging.sending_steps import ab_step, sends_step

    # before the outbox, so messages written in this pass are delivered in the same pass
    steps += [("sends", sends_step), ("ab", ab_step)]
    from ekiden.predictive.training import rescore_due

    # predictive scores of open leads, once a day (new behaviour since the last scoring)
    steps.append(("predictions", rescore_due))
    from ekiden.outbox import outbox_step

    # delivery last: side effects enqueued by the steps above leave in the same pass
    steps.append(("outbox", outbox_step))
    return steps


@dataclass
class WorkReport:
    segments_rebuilt: int = 0
    contacts_refreshed: int = 0
    entered: int = 0
    exited: int = 0
    periodic: dict[str, int] = field(default_factory=dict)

    def add(self, done: Refreshed) -> None:
        self.entered += done.entered
        self.exited += done.exited

    @property
    def busy(self) -> bool:
        return bool(self.segments_rebuilt or self.contacts_refreshed or any(self.periodic.values()))

    def merge(self, other: WorkReport) -> None:
        self.contacts_refreshed += other.contacts_refreshed
        self.segments_rebuilt += other.segments_rebuilt
        self.entered += other.entered
        self.exited += other.exited
        for name, count in other.periodic.items():
            self.periodic[name] = self.periodic.get(name, 0) + count


@dataclass
class Worker:
    engine: Engine
    clock: Clock
    settings: Settings
    batch_size: int = 500
    contact_steps: Sequence[tuple[str, ContactStep]] = field(default_factory=default_contact_steps)
    periodic_steps: Sequence[tuple[str, PeriodicStep]] = field(
        default_factory=default_periodic_steps
    )
    time_refresh_every: timedelta = timedelta(minutes=10)
    _last_time_refresh: datetime | None = field(default=None, init=False)

    def rebuild_changed_segments(self) -> Refreshed:
        with self.engine.begin() as conn:
            return rebuild_due(conn, self.clock, self.settings.zone)

    def refresh_dirty_batch(self) -> Refreshed:
        """Claim one batch of changed contacts and refresh their memberships."""
        with self.engine.begin() as conn:
            ids = claim_dirty(conn, self.batch_size)
            if ids:
                for _, step in self.contact_steps:
                    step(conn, self.clock, self.settings, ids)
            return refresh_contacts(conn, self.clock, ids, self.settings.zone)

    def refresh_time_windows(self, *, force: bool = False) -> Refreshed:
        now = self.clock.now()
        due = self._last_time_refresh is None or now - self._last_time_refresh >= (
            self.time_refresh_every
        )
        if not (due or force):
            return Refreshed()
        with self.engine.begin() as conn:
            done = refresh_time_dependent(conn, self.clock, self.settings.zone)
        self._last_time_refresh = now
        return done

    def run_once(self) -> WorkReport:
        """Do everything that is due now, then return what was done."""
        report = WorkReport()
        rebuilt = self.rebuild_changed_segments()
        report.segments_rebuilt += rebuilt.segments
        report.add(rebuilt)
        report.add(self.refresh_time_windows())
        while True:
            done = self.refresh_dirty_batch()
            if not done.contacts:
                break
            report.contacts_refreshed += done.contacts
            report.add(done)
        for name, step in self.periodic_steps:
            report.periodic[name] = step(self.engine, self.clock, self.settings)
        return report

    def run_forever(self, stop: threading.Event, *, idle_sleep: float = 0.2) -> None:
        """Poll until ``stop`` is set; errors are logged and retried, never fatal."""
        while not stop.is_set():
            try:
                report = self.run_once()
            except Exception:
                log.exception("worker step failed; retrying")
                report = WorkReport()
                stop.wait(2.0)
            if report.busy:
                log.info(
                    "refreshed %d contacts, rebuilt %d segments (+%d / -%d members)",
                    report.contacts_refreshed,
                    report.segments_rebuilt,
                    report.entered,
                    report.exited,
                )
            else:
                stop.wait(idle_sleep)


def start_in_thread(worker: Worker) -> tuple[threading.Thread, threading.Event]:
    """Run ``worker`` in a daemon thread (``ekiden run``); set the event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def wait_until_idle(worker: Worker, *, timeout: float = 30.0) -> WorkReport:
    """Run until a pass finds nothing to do (tests, benchmarks)."""
    deadline = time.monotonic() + timeout
    total = WorkReport()
    while time.monotonic() < deadline:
        report = worker.run_once()
        total.merge(report)
        if not report.busy:
            return total
    raise TimeoutError("the worker still had work after the timeout")
