"""Ingestion on a SQLite file writes one request at a time across the server's processes."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import create_engine, func, select
from tests.conftest import free_port

from ekiden.auth.keys import create_key
from ekiden.bench.ingest import post_all
from ekiden.bench.workload import generate_messages
from ekiden.clock import SystemClock
from ekiden.db import create_db_engine
from ekiden.tracking.router import _one_writer
from ekiden.tracking.tables import events

EKIDEN = Path(sys.executable).with_name("ekiden")


def _hold(
    url: str, held: multiprocessing.synchronize.Event, released: multiprocessing.Queue[float]
) -> None:
    engine = create_engine(url)
    with _one_writer(engine):
        held.set()
        time.sleep(0.5)
        released.put(time.monotonic())


def test_a_second_process_waits_for_the_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ekiden.db'}"
    context = multiprocessing.get_context("spawn")
    held = context.Event()
    released: multiprocessing.Queue[float] = context.Queue()
    child = context.Process(target=_hold, args=(url, held, released))
    child.start()
    try:
        assert held.wait(30), "the other process did not take the lock"
        with _one_writer(create_engine(url)):
            entered = time.monotonic()
        assert entered >= released.get(timeout=30)
    finally:
        child.join(30)
    assert child.exitcode == 0
    assert (tmp_path / "ekiden.db.write-lock").exists()


@pytest.mark.slow
def test_serve_with_two_workers_stores_every_event_once(tmp_path: Path) -> None:
    """`ekiden serve --workers 2` on a SQLite file: batches posted side by side reach both
    processes and every event is stored exactly once."""
    url = f"sqlite:///{tmp_path / 'ekiden.db'}"
    env = {**os.environ, "EKIDEN_DATABASE_URL": url}
    subprocess.run([str(EKIDEN), "migrate"], env=env, check=True)
    engine = create_db_engine(url)
    with engine.begin() as conn:
        key = create_key(conn, SystemClock(), scope="ingest", name="test")
    messages = generate_messages(1200, seed=11, run="w2-")
    bodies = [orjson.dumps({"batch": messages[i : i + 100]}) for i in range(0, 1200, 100)]
    port = free_port()
    command = [
        str(EKIDEN), "serve", "--workers", "2", "--port", str(port),
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
    try:
        post_all(_wait_until_up(f"http://127.0.0.1:{port}", server), key, bodies, clients=4)
    finally:
        server.terminate()
        server.wait(30)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(events)).scalar_one()
        distinct = conn.execute(select(func.count(events.c.message_id.distinct()))).scalar_one()
    engine.dispose()
    assert stored == distinct == 1200


def _wait_until_up(url: str, server: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the server exited with code {server.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not start within 60 s")
