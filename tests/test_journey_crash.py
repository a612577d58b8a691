"""A worker process killed (SIGKILL) in the middle of a batch loses nothing and doubles
nothing: its open transaction rolls back whole, the enrolments it held are claimed again by
the workers that go on, and every side effect ends up written exactly once."""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlalchemy import Engine, text

from ekiden.bench.journeys import WorkerProcess, run_phases, set_up
from test_journey_concurrency import JOURNEY, MOMENTS, check_exactly_once, scalar

NAME = "ekiden-crash-victim"


def open_transaction(engine: Engine) -> int | None:
    """The server process of the victim while its transaction has written (claimed rows
    count: FOR UPDATE marks them), else None."""
    with engine.connect() as conn:
        pid = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name "
                 "AND backend_xid IS NOT NULL"), {"name": NAME},
        ).scalar()  # fmt: skip
    return None if pid is None else int(pid)


def kill_mid_batch(engine: Engine, victim: WorkerProcess, done_sql: str) -> None:
    """SIGKILL the victim once it committed a batch and has the next one open; then wait
    until the server has rolled that transaction back (its connection is gone)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if scalar(engine, done_sql) > 0 and open_transaction(engine) is not None:
            os.kill(victim.process.pid, signal.SIGKILL)
            victim.process.wait()
            victim.close()
            break
        assert victim.process.poll() is None, "the victim ended before it could be killed"
        time.sleep(0.005)
    else:
        raise AssertionError("the victim never had a batch open")
    while open_transaction(engine) is not None or scalar(
        engine, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{NAME}'"
    ):
        assert time.monotonic() < deadline + 30, "the killed connection stayed open"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(
    db_url: str, engine: Engine
) -> None:
    count = 6_000
    set_up(engine, count, journey=JOURNEY)
    victim_url = f"{db_url}{'&' if '?' in db_url else '?'}application_name={NAME}"
    checks = [
        # before the wait: each enrolment's email, step and new state commit together
        (
            "SELECT count(*) FROM enrolments WHERE state = 'waiting'",
            [
                "SELECT count(*) FROM email_messages",
                "SELECT count(*) FROM outbox WHERE kind = 'email'",
                "SELECT count(*) FROM enrolment_steps WHERE node = 'mail'",
            ],
        ),
        # after the wait: tag, stage move, history and state together
        (
            "SELECT count(*) FROM enrolments WHERE state = 'completed'",
            [
                "SELECT count(*) FROM contact_tags WHERE tag = 'done'",
                "SELECT count(*) FROM stage_history WHERE to_stage = 'hot'",
                "SELECT count(*) FROM enrolment_steps WHERE node = 'stage'",
            ],
        ),
    ]
    for moment, (done_sql, alike) in zip(MOMENTS, checks, strict=True):
        victim = WorkerProcess(victim_url)
        victim.start_run(moment, 1_000)
        kill_mid_batch(engine, victim, done_sql)
        done = scalar(engine, done_sql)
        assert 0 < done < count  # killed part way through, with batches committed
        assert [scalar(engine, sql) for sql in alike] == [done] * len(alike)
        _, claimed, _ = run_phases(db_url, 2, 500, [moment])  # the workers that go on
        assert sum(claimed) == count - done  # what the killed batch held is claimed again
    check_exactly_once(engine, count)
