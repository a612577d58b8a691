"""Crash test: a worker killed with SIGKILL in the middle of delivering mail loses nothing,
and once its leases expire every recipient has exactly one message (counted by Message-ID
at the SMTP server); raw repeats are bounded by the messages that were in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.outbox import deliver_due, enqueue
from ekiden.outbox.tables import outbox
from smtp_server import SmtpTestServer

MESSAGES = 400
LANES = 4

WORKER = """
from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.outbox import deliver_due

settings = load_settings()
engine = create_db_engine(settings.database_url)
while deliver_due(engine, SystemClock(), settings, limit=50):
    pass
"""


def test_killed_worker_loses_nothing_and_each_recipient_gets_one_message(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    with engine.begin() as conn:
        for n in range(MESSAGES):
            enqueue(
                conn,
                clock,
                kind="mail",
                key=f"alert-{n}",
                payload={"to": [f"sales{n}@example.co.jp"], "subject": f"#{n}", "text": "hot"},
            )
    with SmtpTestServer() as smtp:
        env = {
            **os.environ,
            "EKIDEN_DATABASE_URL": settings.database_url,
            "EKIDEN_SECRET_KEY": settings.secret_key,
            "EKIDEN_SMTP_URL": smtp.url,
            "EKIDEN_MAIL_FROM": "noreply@example.co.jp",
            "EKIDEN_OUTBOX_CONCURRENCY": str(LANES),
        }
        worker = subprocess.Popen([sys.executable, "-c", WORKER], env=env)
        deadline = time.monotonic() + 120  # the worker process imports slowly on a busy machine
        while len(smtp.received) < MESSAGES // 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        arrived_before_restart = len(smtp.received)
        assert 0 < arrived_before_restart < MESSAGES

        # a new worker, after the dead one's leases have expired
        later = FrozenClock(
            datetime.now(UTC) + timedelta(seconds=settings.outbox_lease_seconds + 5)
        )
        restarted = settings.model_copy(
            update={"smtp_url": smtp.url, "mail_from": "noreply@example.co.jp"}
        )
        while deliver_due(engine, later, restarted):
            pass

        by_id = smtp.count_by_message_id()
        ids_per_recipient: dict[str, set[str]] = {}
        for message in smtp.parsed():
            ids_per_recipient.setdefault(str(message["To"]), set()).add(str(message["Message-ID"]))
    assert len(by_id) == MESSAGES
    assert len(ids_per_recipient) == MESSAGES
    assert all(len(ids) == 1 for ids in ids_per_recipient.values())
    repeats = sum(by_id.values()) - MESSAGES
    assert repeats <= LANES  # only what was in flight when the worker died
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)).all()
        )
    assert statuses == {"sent": MESSAGES}
