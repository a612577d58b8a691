"""Exactly once through crashes and provider trouble.

- ``ekiden worker`` as a real process delivering a send, killed with SIGKILL mid-send and
  restarted: every recipient gets its message, with one Message-ID, never two messages.
  Size: EKIDEN_CRASH_RECIPIENTS (default 300; the slow-marked variant sends 10,000).
- an SMTP server answering 4xx for a while, then recovering: nothing lost, nothing doubled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import Engine, select

import ekiden.messaging.handler  # noqa: F401  (registers the "email" handler)
from ekiden.clock import FrozenClock, SystemClock
from ekiden.config import Settings
from ekiden.messaging import sends
from ekiden.messaging.sends_models import SendIn
from ekiden.outbox import deliver_due
from ekiden.outbox.tables import outbox
from smtp_server import SmtpTestServer
from test_sending_support import SENDER, add_contacts, add_template, mail_settings, statuses

EKIDEN = Path(sys.executable).with_name("ekiden")


def _worker(db_url: str, smtp_url: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EKIDEN_DATABASE_URL": db_url,
        "EKIDEN_SMTP_URL": smtp_url,
        "EKIDEN_SECRET_KEY": "crash-test-secret-" + "x" * 32,
        "EKIDEN_BASE_URL": "http://testserver",
        # a killed worker's claimed deliveries come back after two seconds
        "EKIDEN_OUTBOX_LEASE_SECONDS": "2",
        "EKIDEN_OUTBOX_RETRY_BASE_SECONDS": "1",
        **{f"EKIDEN_{key.upper()}": value for key, value in SENDER.items()},
    }
    return subprocess.Popen([str(EKIDEN), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_for(predicate: object, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _crash_and_restart(engine: Engine, db_url: str, tmp_path: Path, recipients: int) -> None:
    clock = SystemClock()
    add_template(engine, clock)
    add_contacts(engine, clock, recipients)
    with engine.begin() as conn:
        sends.create_send(
            conn,
            clock,
            mail_settings(db_url),
            SendIn.model_validate(
                {"template": "news", "audience": {"filter": {"field": "email", "op": "is_set"}}}
            ),
        )
    log_path = tmp_path / "worker.log"
    with SmtpTestServer() as smtp, log_path.open("ab") as log:
        first = _worker(db_url, smtp.url, log)
        try:
            _wait_for(
                lambda: len(smtp.received) >= recipients // 3,
                timeout=max(120, recipients / 10),
                what="deliveries",
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        at_kill = len(smtp.received)
        second = _worker(db_url, smtp.url, log)
        try:
            _wait_for(
                lambda: statuses(engine) == {"sent": recipients},
                timeout=1500,
                what=f"all messages sent (log: {log_path.read_text()[-2000:]})",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
        arrived = smtp.parsed()

    assert 0 < at_kill < recipients  # the kill happened mid-send
    per_recipient = Counter(str(m["To"]).rpartition("<")[2].rstrip(">") for m in arrived)
    ids_per_recipient: dict[str, set[str]] = {}
    for message in arrived:
        to = str(message["To"]).rpartition("<")[2].rstrip(">")
        ids_per_recipient.setdefault(to, set()).add(str(message["Message-ID"]))
    expected = {f"c{n}@example.jp" for n in range(recipients)}
    assert set(per_recipient) == expected
    assert {len(ids) for ids in ids_per_recipient.values()} == {1}
    assert len({str(m["Message-ID"]) for m in arrived}) == recipients
    # only messages on the wire at the kill (at most one per delivery lane) may be repeated,
    # and a repeat carries the same Message-ID (receivers drop it); nothing else is sent twice
    lanes = Settings.model_fields["outbox_concurrency"].default
    assert sum(per_recipient.values()) - recipients <= lanes
    with engine.connect() as conn:
        assert set(conn.execute(select(outbox.c.status)).scalars()) == {"sent"}


def test_killed_worker_resumes_and_every_recipient_gets_one_message(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    recipients = int(os.environ.get("EKIDEN_CRASH_RECIPIENTS", "300"))
    _crash_and_restart(engine, db_url, tmp_path, recipients)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_killed_worker_resumes_a_ten_thousand_message_send(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    _crash_and_restart(engine, db_url, tmp_path, 10_000)


def test_smtp_refusing_for_a_while_loses_nothing_and_doubles_nothing(
    engine: Engine, db_url: str, clock: FrozenClock
) -> None:
    add_template(engine, clock)
    add_contacts(engine, clock, 30)
    with SmtpTestServer() as smtp:
        settings = mail_settings(db_url, outbox_retry_base_seconds=60)
        settings = settings.model_copy(update={"smtp_url": smtp.url})
        with engine.begin() as conn:
            sends.create_send(
                conn,
                clock,
                settings,
                SendIn.model_validate(
                    {"template": "news", "audience": {"filter": {"field": "email", "op": "is_set"}}}
                ),
            )
        while sends.dispatch_due(engine, clock, settings):
            pass
        smtp.fail_next(10, "451 4.3.0 try again later")
        deliver_due(engine, clock, settings)
        assert len(smtp.received) == 20
        smtp.fail_all("421 4.3.2 down for maintenance")
        for _ in range(3):
            clock.advance(timedelta(minutes=10))
            deliver_due(engine, clock, settings)
        assert len(smtp.received) == 20
        smtp.recover()
        for _ in range(12):
            clock.advance(timedelta(minutes=30))
            deliver_due(engine, clock, settings)
        counts = smtp.count_by_message_id()

    assert len(counts) == 30
    assert set(counts.values()) == {1}
    assert statuses(engine) == {"sent": 30}
