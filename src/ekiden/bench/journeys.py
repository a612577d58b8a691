"""``ekiden bench journeys``: node executions per second of the journey engine, with one and
with two worker processes, against a hand-written claim + update loop over the same rows.

Per repeat, on a fresh scratch database:
1. setup (not timed): N contacts (the generated B2B population, two page-view-like events
   each), one email template, the 6-node journey below, activated, and every contact enrolled
   (one set-based INSERT: enrolment itself is not what is measured);
2. the engine (timed): W worker processes (real, separate ``python`` processes, each running
   the engine's claiming loop ``run_due`` until nothing is due) run the journey in two phases,
   at the enrolment time (email, then the wait starts) and one day later (the wait ends,
   branch, webhook for the branch's "yes" side, stage change). Node executions are the
   history rows the engine wrote, not counting the "waiting" rows of arrivals at the wait. The
   resident memory (RSS) of each worker is sampled from /proc every 0.2 s;
3. the baseline (timed): one process claims the same enrolments in batches of the same size
   with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), writes one history row and updates each row
   (executemany), and commits per batch: the database floor of one node execution.

The journey: manual entry (the trigger) → ``send_email`` → ``wait`` 1 day → ``branch``
(job title 部長 / 本部長 / 課長, or a /pricing page view in 30 days) → yes: ``webhook`` →
``change_stage`` hot; otherwise straight to ``change_stage``.

With ``--decision-contacts M`` it also times one decision over M enrolled contacts: M
enrolments waiting at a wait that ends now, then a branch on the same condition and an exit
node, run by the W workers of the last configuration.

Run as ``python -m ekiden.bench.journeys worker URL`` it is one such worker process: it
answers ``ready``, then for each ``run <ISO time> <batch>`` line on stdin drains what is due
at that time and answers with a JSON line of what it did.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from sqlalchemy import Engine, bindparam, func, select, text
from sqlalchemy.engine import make_url

from ekiden.db import create_db_engine

START = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
SECRET = "bench-secret-key-" + "x" * 32
TEMPLATE_KEY = "bench-welcome"

CONDITION: dict[str, Any] = {
    "any": [
        {"field": "job_title", "op": "in", "value": ["部長", "本部長", "課長"]},
        {
            "event": "page",
            "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}],
            "within_days": 30,
        },
    ]
}

JOURNEY: dict[str, Any] = {
    "key": "bench",
    "name": "bench",
    "entry": {"triggers": [{"manual": True}]},
    "start": "mail",
    "nodes": [
        {"id": "mail", "type": "send_email", "email": TEMPLATE_KEY, "next": "wait"},
        {"id": "wait", "type": "wait", "duration": "1d", "next": "decide"},
        {
            "id": "decide",
            "type": "branch",
            "branches": [{"when": CONDITION, "next": "hook"}],
            "otherwise": "stage",
        },
        {"id": "hook", "type": "webhook", "url": "http://partner.invalid/ship", "next": "stage"},
        {"id": "stage", "type": "change_stage", "stage": "hot"},
    ],
}

DECISION: dict[str, Any] = {
    "key": "decision",
    "name": "decision",
    "entry": {"triggers": [{"manual": True}]},
    "start": "wait",
    "nodes": [
        {"id": "wait", "type": "wait", "duration": "1d", "next": "decide"},
        {
            "id": "decide",
            "type": "branch",
            "branches": [{"when": CONDITION, "next": "picked"}],
            "otherwise": "rest",
        },
        {"id": "picked", "type": "exit"},
        {"id": "rest", "type": "exit"},
    ],
}


class BenchError(Exception):
    pass


@dataclass
class EngineRun:
    workers: int
    node_executions: int
    seconds: float
    claimed: list[int]  # enrolment passes per worker
    rss_mb: list[list[float]]  # per worker, the samples in order

    @property
    def rate(self) -> float:
        return self.node_executions / self.seconds

    def rss_growth(self) -> float:
        """MB from the median of the first fifth of the samples to the peak of the last
        fifth, the worst worker (how far memory climbs while the run goes on)."""
        growth = 0.0
        for samples in self.rss_mb:
            if len(samples) < 5:
                continue
            fifth = len(samples) // 5
            growth = max(growth, max(samples[-fifth:]) - statistics.median(samples[:fifth]))
        return growth

    def rss_peak(self) -> float:
        return max((max(s) for s in self.rss_mb if s), default=0.0)


@dataclass
class DecisionRun:
    enrolled: int
    workers: int
    seconds: float
    picked: int


@dataclass
class JourneysReport:
    backend: str
    contacts: int
    batch: int
    runs: dict[int, list[EngineRun]] = field(default_factory=dict)
    baseline: list[float] = field(default_factory=list)  # rows/s
    decision: DecisionRun | None = None

    def median(self, workers: int) -> float:
        return statistics.median(r.rate for r in self.runs[workers])

    @property
    def baseline_median(self) -> float:
        return statistics.median(self.baseline)

    def scaling(self) -> float | None:
        if 1 in self.runs and 2 in self.runs:
            return self.median(2) / self.median(1)
        return None


def run_journeys_bench(
    database_url: str,
    *,
    contacts: int,
    workers: list[int],
    repeat: int,
    batch: int,
    decision_contacts: int = 0,
) -> JourneysReport:
    from ekiden.bench.scratch import scratch_database

    backend = make_url(database_url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BenchError(f"--database-url must be sqlite:///… or postgresql://…, not {backend}")
    if not workers or any(w < 1 for w in workers):
        raise BenchError("--workers needs positive numbers of worker processes")
    report = JourneysReport(backend=backend, contacts=contacts, batch=batch)
    for _ in range(repeat):
        for count in workers:
            with scratch_database(database_url) as url:
                engine = create_db_engine(url)
                try:
                    set_up(engine, contacts)
                    run = _run_engine(url, engine, count, batch)
                    if run.node_executions < 4 * contacts:
                        raise BenchError(
                            f"only {run.node_executions} node executions for {contacts} "
                            "contacts: the engine left work undone"
                        )
                    report.runs.setdefault(count, []).append(run)
                    report.baseline.append(_baseline(engine, contacts, batch))
                finally:
                    engine.dispose()
    if decision_contacts:
        with scratch_database(database_url) as url:
            engine = create_db_engine(url)
            try:
                report.decision = _decision(url, engine, decision_contacts, max(workers), batch)
            finally:
                engine.dispose()
    return report


def _settings(url: str) -> Any:
    from ekiden.config import load_settings

    return load_settings(database_url=url, secret_key=SECRET, base_url="http://bench.invalid")


def set_up(engine: Engine, contacts: int, *, journey: dict[str, Any] = JOURNEY) -> None:
    """Population, template and the activated journey, with every contact enrolled."""
    from ekiden.bench.population import generate
    from ekiden.clock import FrozenClock
    from ekiden.journeys import service
    from ekiden.messaging.models import EmailTemplateIn
    from ekiden.messaging.store import create_template

    clock = FrozenClock(START)
    generate(engine, contacts=contacts, events=max(1_000, 2 * contacts), now=START)
    settings = _settings(str(engine.url))
    with engine.begin() as conn:
        create_template(
            conn,
            clock,
            EmailTemplateIn(
                key=TEMPLATE_KEY,
                name="bench",
                subject="{{ contact.last_name | default('お客') }}様へのご案内",
                html="<p>ご案内です。</p>",
            ),
        )
        created = service.create_journey(conn, clock, journey, settings.zone)
        service.activate_journey(conn, clock, created.key, settings.zone)
    _enrol_all(engine, journey)


def _enrol_all(engine: Engine, journey: dict[str, Any], *, waiting: bool = False) -> None:
    """Every contact enrolled at the journey's start, due at START, in one statement (a
    ``waiting`` enrolment sits in the start node, a wait that ends at START)."""
    started = (START - timedelta(days=1)).replace(tzinfo=None)
    now = START.replace(tzinfo=None)
    with engine.begin() as conn:
        journey_id = conn.execute(
            text("SELECT id FROM journeys WHERE key = :key"), {"key": journey["key"]}
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO enrolments (journey_id, version, contact_id, node, state, due_at, "
                "wait_started_at, wait_deadline, steps, attempts, trigger, entry_slot, "
                "entered_at) "
                "SELECT :journey, 1, id, :node, :state, :now, :started, :deadline, :steps, 0, "
                "'manual', 'once', :entered FROM contacts"
            ),
            {
                "journey": journey_id,
                "node": journey["start"],
                "state": "waiting" if waiting else "running",
                "now": now,
                "started": started if waiting else None,
                "deadline": now if waiting else None,
                "steps": 1 if waiting else 0,
                "entered": started if waiting else now,
            },
        )
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE enrolments"))
        else:
            conn.execute(text("ANALYZE"))


class WorkerProcess:
    """One worker process running the engine's claiming loop."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [sys.executable, "-m", "ekiden.bench.journeys", "worker", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.rss: list[float] = []
        try:
            started = self._line() == "ready"
        except BenchError:
            started = False
        if not started:
            self.close()
            raise BenchError("a worker process did not start")

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"a worker process ended (exit code {self.process.wait()})")
        return line.strip()

    def start_run(self, moment: datetime, batch: int) -> None:
        """Drain what is due at ``moment`` (answered by ``result``)."""
        self.send(f"run {moment.isoformat()} {batch}")

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def result(self) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self._line())
        return answer

    def sample(self) -> None:
        try:
            with open(f"/proc/{self.process.pid}/statm") as statm:
                pages = int(statm.read().split()[1])
        except (OSError, ValueError, IndexError):
            return
        self.rss.append(pages * os.sysconf("SC_PAGE_SIZE") / 2**20)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def run_phases(
    url: str, count: int, batch: int, moments: list[datetime]
) -> tuple[float, list[int], list[list[float]]]:
    workers: list[WorkerProcess] = []
    try:
        for _ in range(count):
            workers.append(WorkerProcess(url))
    except BaseException:
        for worker in workers:
            worker.close()
        raise
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(0.2):
            for worker in workers:
                worker.sample()

    seconds = 0.0
    claimed = [0] * count
    thread = threading.Thread(target=sampler, daemon=True)
    try:
        thread.start()
        for moment in moments:
            began = time.perf_counter()
            for worker in workers:
                worker.start_run(moment, batch)
            for i, worker in enumerate(workers):
                claimed[i] += int(worker.result()["claimed"])
            seconds += time.perf_counter() - began
    finally:
        stop.set()
        thread.join()
        for worker in workers:
            worker.close()
    return seconds, claimed, [w.rss for w in workers]


def _executions(engine: Engine) -> int:
    from ekiden.journeys.tables import enrolment_steps

    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(enrolment_steps)
                .where(enrolment_steps.c.result != "waiting")
            ).scalar_one()
        )


def _run_engine(url: str, engine: Engine, count: int, batch: int) -> EngineRun:
    moments = [START, START + timedelta(days=1, seconds=1)]
    seconds, claimed, rss = run_phases(url, count, batch, moments)
    _check_done(engine)
    return EngineRun(
        workers=count,
        node_executions=_executions(engine),
        seconds=seconds,
        claimed=claimed,
        rss_mb=rss,
    )


def _check_done(engine: Engine) -> None:
    from ekiden.journeys.tables import enrolments

    with engine.connect() as conn:
        left = conn.execute(
            select(enrolments.c.state, func.count())
            .where(enrolments.c.state != "completed")
            .group_by(enrolments.c.state)
        ).all()
    if left:
        shown = ", ".join(f"{n} {s}" for s, n in left)
        raise BenchError(f"enrolments left unfinished after the run: {shown}")


def _baseline(engine: Engine, contacts: int, batch: int) -> float:
    """Rows per second of a hand-written claim, history insert and update per batch."""
    from ekiden.journeys.tables import enrolment_steps, enrolments

    with engine.begin() as conn:
        conn.execute(enrolments.update().values(state="running", due_at=START, ended_at=None))
    postgres = engine.dialect.name == "postgresql"
    done = 0
    began = time.perf_counter()
    while True:
        with engine.begin() as conn:
            query = (
                select(enrolments.c.id, enrolments.c.journey_id, enrolments.c.contact_id)
                .where(enrolments.c.state == "running", enrolments.c.due_at <= START)
                .order_by(enrolments.c.due_at)
                .limit(batch)
            )
            if postgres:
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if not rows:
                break
            conn.execute(
                enrolment_steps.insert(),
                [
                    {
                        "enrolment_id": r.id,
                        "journey_id": r.journey_id,
                        "contact_id": r.contact_id,
                        "node": "stage",
                        "node_type": "baseline",
                        "result": "next",
                        "at": START,
                        "detail": {},
                    }
                    for r in rows
                ],
            )
            conn.execute(
                enrolments.update()
                .where(enrolments.c.id == bindparam("b_id"))
                .values(state="completed", due_at=None, steps=bindparam("b_steps")),
                [{"b_id": r.id, "b_steps": 6} for r in rows],
            )
            done += len(rows)
    seconds = time.perf_counter() - began
    if done != contacts:
        raise BenchError(f"the baseline loop claimed {done} of {contacts} enrolments")
    return done / seconds


def _decision(url: str, engine: Engine, contacts: int, count: int, batch: int) -> DecisionRun:
    from ekiden.bench.population import generate
    from ekiden.clock import FrozenClock
    from ekiden.journeys import service
    from ekiden.journeys.tables import enrolment_steps

    clock = FrozenClock(START - timedelta(days=1))
    generate(engine, contacts=contacts, events=max(1_000, contacts), now=START)
    settings = _settings(url)
    with engine.begin() as conn:
        service.create_journey(conn, clock, DECISION, settings.zone)
        service.activate_journey(conn, clock, DECISION["key"], settings.zone)
    _enrol_all(engine, DECISION, waiting=True)
    seconds, _, _ = run_phases(url, count, batch, [START])
    _check_done_states(engine, contacts)
    with engine.connect() as conn:
        picked = conn.execute(
            select(func.count())
            .select_from(enrolment_steps)
            .where(enrolment_steps.c.node == "decide", enrolment_steps.c.result == "branches[0]")
        ).scalar_one()
    return DecisionRun(enrolled=contacts, workers=count, seconds=seconds, picked=int(picked))


def _check_done_states(engine: Engine, contacts: int) -> None:
    from ekiden.journeys.tables import enrolments

    with engine.connect() as conn:
        exited = conn.execute(
            select(func.count()).select_from(enrolments).where(enrolments.c.state == "exited")
        ).scalar_one()
    if exited != contacts:
        raise BenchError(f"only {exited} of {contacts} enrolments were decided")


def _serve(url: str, stdin: IO[str], stdout: IO[str]) -> None:
    """The worker process: drain what is due at each moment it is told."""
    from ekiden.clock import FrozenClock
    from ekiden.journeys.engine import run_due

    settings = _settings(url)
    engine = create_db_engine(url)
    with engine.connect() as conn:  # the connection is made before the clock starts
        conn.execute(text("SELECT 1"))
    profile = os.environ.get("EKIDEN_BENCH_PROFILE")
    profiler: Any = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    stdout.write("ready\n")
    stdout.flush()
    for line in stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        moment, batch = datetime.fromisoformat(parts[1]), int(parts[2])
        clock = FrozenClock(moment)
        claimed = 0
        began = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        while done := run_due(engine, clock, settings, batch=batch):
            claimed += done
        if profiler is not None:
            profiler.disable()
        stdout.write(
            json.dumps({"claimed": claimed, "seconds": time.perf_counter() - began}) + "\n"
        )
        stdout.flush()
    if profiler is not None:
        profiler.dump_stats(f"{profile}.{os.getpid()}")
    engine.dispose()


if __name__ == "__main__":  # pragma: no cover - the worker process of the benchmark
    if len(sys.argv) != 3 or sys.argv[1] != "worker":
        sys.exit("usage: python -m ekiden.bench.journeys worker DATABASE_URL")
    _serve(sys.argv[2], sys.stdin, sys.stdout)
