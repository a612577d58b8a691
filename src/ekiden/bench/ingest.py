"""`ekiden bench ingest`: events per second through the batch endpoint, end to end, against
the raw bulk-insert rate of the same rows into the same database.

End to end means: a real uvicorn server in its own process on a fresh database, batches
posted over HTTP by client threads, the clock stopped when the last answer (sent after the
commit) arrives, and the stored row count checked. The raw rate inserts the very rows that
run stored (read back, deleted, inserted again) with SQLAlchemy executemany, one
transaction per batch like the server's.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, delete, func, insert, select

from ekiden.auth.keys import create_key
from ekiden.bench.scratch import scratch_database
from ekiden.bench.workload import generate_messages
from ekiden.clock import SystemClock
from ekiden.db import create_db_engine
from ekiden.tracking.tables import events


class BenchError(Exception):
    """The benchmark could not produce a trustworthy figure (server failed, rows missing)."""


@dataclass(frozen=True)
class IngestRun:
    http_rate: float  # events per second through POST /v1/batch, committed
    raw_rate: float  # rows per second, SQLAlchemy executemany into the same table
    stored: int

    @property
    def ratio(self) -> float:
        return self.http_rate / self.raw_rate


@dataclass(frozen=True)
class IngestReport:
    backend: str
    events: int
    batch_size: int
    workers: int
    clients: int
    runs: list[IngestRun]

    @property
    def http_median(self) -> float:
        return statistics.median(r.http_rate for r in self.runs)

    @property
    def raw_median(self) -> float:
        return statistics.median(r.raw_rate for r in self.runs)

    @property
    def ratio_median(self) -> float:
        return statistics.median(r.ratio for r in self.runs)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(database_url: str, *, workers: int) -> Iterator[str]:
    """``uvicorn`` serving Ekiden on ``database_url`` in a child process; yields its URL."""
    port = _free_port()
    env = {**os.environ, "EKIDEN_DATABASE_URL": database_url}
    command = [
        sys.executable, "-m", "uvicorn", "ekiden.web.server:create", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise BenchError(f"the server exited with code {process.returncode}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("the server did not start within 30 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _bodies(messages: list[dict[str, Any]], batch_size: int) -> list[bytes]:
    sent_at = datetime.now(UTC).isoformat()
    return [
        orjson.dumps({"batch": messages[i : i + batch_size], "sentAt": sent_at})
        for i in range(0, len(messages), batch_size)
    ]


def post_all(url: str, key: str, bodies: list[bytes], *, clients: int) -> float:
    """Post every body (``clients`` at a time); seconds from first send to last answer."""
    headers = {"Content-Type": "application/json"}
    auth = httpx.BasicAuth(key, "")
    slices = [bodies[i::clients] for i in range(clients)]

    def send(share: list[bytes]) -> None:
        with httpx.Client(base_url=url, auth=auth, headers=headers, timeout=120) as http:
            for body in share:
                answer = http.post("/v1/batch", content=body)
                if answer.status_code != 200:
                    raise BenchError(f"POST /v1/batch answered {answer.status_code}: {answer.text}")

    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        for future in [pool.submit(send, share) for share in slices]:
            future.result()
        return time.perf_counter() - started


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)).scalar_one())


def raw_insert(engine: Engine, first_id: int, batch_size: int) -> tuple[int, float]:
    """Re-insert the rows with id > ``first_id`` the plain way: read them, delete them, then
    time ``insert(events)`` executemany per batch. Returns (rows, seconds)."""
    columns = [c for c in events.c if c.name != "id"]
    with engine.begin() as conn:
        rows = [
            dict(r._mapping) for r in conn.execute(select(*columns).where(events.c.id > first_id))
        ]
        conn.execute(delete(events).where(events.c.id > first_id))
    started = time.perf_counter()
    for start in range(0, len(rows), batch_size):
        with engine.begin() as conn:
            conn.execute(insert(events), rows[start : start + batch_size])
    return len(rows), time.perf_counter() - started


def run_ingest_bench(
    database_url: str,
    *,
    events_count: int,
    batch_size: int,
    repeat: int,
    workers: int,
    clients: int,
) -> IngestReport:
    """Run the benchmark ``repeat`` times on one scratch database; raise BenchError when a
    run's stored row count differs from what was posted."""
    runs: list[IngestRun] = []
    with scratch_database(database_url) as scratch:
        engine = create_db_engine(scratch)
        try:
            with engine.begin() as conn:
                key = create_key(conn, SystemClock(), scope="ingest", name="bench")
            with serve(scratch, workers=workers) as url:
                for number in range(repeat):
                    messages = generate_messages(
                        events_count, seed=2026 + number, run=f"r{number}-"
                    )
                    bodies = _bodies(messages, batch_size)
                    with engine.connect() as conn:
                        last_id = conn.execute(select(func.max(events.c.id))).scalar() or 0
                    before = _count(engine)
                    seconds = post_all(url, key, bodies, clients=clients)
                    stored = _count(engine) - before
                    if stored != events_count:
                        raise BenchError(f"posted {events_count} events but {stored} were stored")
                    rows, raw_seconds = raw_insert(engine, last_id, batch_size)
                    if rows != events_count or _count(engine) - before != events_count:
                        raise BenchError("the raw insert did not store every row")
                    runs.append(IngestRun(events_count / seconds, rows / raw_seconds, stored))
        finally:
            engine.dispose()
    return IngestReport(
        backend=create_db_engine(database_url).dialect.name,
        events=events_count,
        batch_size=batch_size,
        workers=workers,
        clients=clients,
        runs=runs,
    )
