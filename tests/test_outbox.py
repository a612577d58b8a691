"""The outbox: idempotent enqueue in the caller's transaction, claiming with a lease,
retries with backoff, permanent failures, and recovery after a crashed worker."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.errors import Invalid
from ekiden.outbox import (
    DeliveryError,
    OutboxEntry,
    Status,
    cancel,
    deliver_due,
    enqueue,
    entry_by_key,
    register_handler,
)
from ekiden.outbox.context import DeliveryContext
from ekiden.outbox.dispatcher import backoff, claim_due
from ekiden.outbox.handlers import AfterSent, _handlers
from ekiden.outbox.tables import outbox
from ekiden.worker import default_periodic_steps


class Recorder:
    """A handler for the test kind: records deliveries, fails as told."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.failures: dict[str, list[DeliveryError]] = {}
        self.failed_hook: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, context: DeliveryContext, entry: OutboxEntry) -> AfterSent | None:
        planned = self.failures.get(entry.key)
        if planned:
            raise planned.pop(0)
        with self.lock:
            self.delivered.append(entry.key)
        return None

    def on_failed(self, conn: object, clock: object, entry: OutboxEntry, reason: str) -> None:
        self.failed_hook.append((entry.key, reason))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    register_handler("test", recorder, on_failed=recorder.on_failed)
    yield recorder
    _handlers.pop("test", None)


def add(engine: Engine, clock: FrozenClock, key: str, **extra: object) -> int | None:
    with engine.begin() as conn:
        return enqueue(
            conn, clock, kind=str(extra.pop("kind", "test")), key=key, payload={"n": key}, **extra
        )  # type: ignore[arg-type]


def status(engine: Engine, key: str) -> OutboxEntry:
    with engine.connect() as conn:
        entry = entry_by_key(conn, key)
    assert entry is not None
    return entry


def test_enqueue_twice_with_one_key_writes_one_row(engine: Engine, clock: FrozenClock) -> None:
    first = add(engine, clock, "k1")
    second = add(engine, clock, "k1")
    assert isinstance(first, int)
    assert second is None
    with engine.connect() as conn:
        assert conn.execute(select(outbox.c.id)).scalars().all() == [first]


def test_enqueue_is_part_of_the_callers_transaction(engine: Engine, clock: FrozenClock) -> None:
    class Abort(Exception):
        pass

    def decide_then_fail() -> None:
        with engine.begin() as conn:
            enqueue(conn, clock, kind="test", key="rolled-back", payload={})
            raise Abort

    with pytest.raises(Abort):
        decide_then_fail()
    with engine.connect() as conn:
        assert entry_by_key(conn, "rolled-back") is None


def test_enqueue_refuses_an_empty_or_overlong_key(engine: Engine, clock: FrozenClock) -> None:
    with engine.begin() as conn:
        with pytest.raises(Invalid):
            enqueue(conn, clock, kind="test", key="", payload={})
        with pytest.raises(Invalid):
            enqueue(conn, clock, kind="test", key="k" * 256, payload={})


def test_due_entries_are_delivered_once_and_marked_sent(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    for n in range(5):
        add(engine, clock, f"k{n}")
    assert deliver_due(engine, clock, settings) == 5
    assert deliver_due(engine, clock, settings) == 0
    assert sorted(recorder.delivered) == [f"k{n}" for n in range(5)]
    entry = status(engine, "k0")
    assert entry.status is Status.SENT
    assert entry.sent_at == clock.now()
    assert entry.attempts == 1


def test_an_entry_due_later_waits_for_its_time(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    add(engine, clock, "later", due_at=clock.now() + timedelta(hours=1))
    assert deliver_due(engine, clock, settings) == 0
    clock.advance(timedelta(hours=1))
    assert deliver_due(engine, clock, settings) == 1
    assert recorder.delivered == ["later"]


def test_a_cancelled_entry_is_never_delivered(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    add(engine, clock, "gone")
    with engine.begin() as conn:
        assert cancel(conn, key="gone") is True
        assert cancel(conn, key="unknown") is False
    assert deliver_due(engine, clock, settings) == 0
    assert status(engine, "gone").status is Status.CANCELLED
    assert recorder.delivered == []


def test_temporary_failure_is_retried_with_growing_backoff(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    add(engine, clock, "flaky")
    recorder.failures["flaky"] = [
        DeliveryError("busy", permanent=False),
        DeliveryError("busy again", permanent=False),
    ]
    deliver_due(engine, clock, settings)
    first = status(engine, "flaky")
    assert first.status is Status.PENDING
    assert first.last_error == "busy"
    first_wait = first.next_attempt_at - clock.now()
    base = settings.outbox_retry_base_seconds
    assert timedelta(seconds=base * 0.75) <= first_wait <= timedelta(seconds=base * 1.25)
    assert deliver_due(engine, clock, settings) == 0  # not due yet
    clock.set(first.next_attempt_at)
    deliver_due(engine, clock, settings)
    second = status(engine, "flaky")
    assert second.next_attempt_at - clock.now() >= timedelta(seconds=base * 2 * 0.75)
    clock.set(second.next_attempt_at)
    deliver_due(engine, clock, settings)
    assert status(engine, "flaky").status is Status.SENT
    assert recorder.delivered == ["flaky"]


def test_temporary_failures_become_permanent_after_the_last_attempt(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    limited = settings.model_copy(update={"outbox_max_attempts": 3})
    add(engine, clock, "down")
    recorder.failures["down"] = [DeliveryError("503 down", permanent=False)] * 5
    for _ in range(3):
        deliver_due(engine, clock, limited)
        clock.advance(timedelta(hours=7))
    entry = status(engine, "down")
    assert entry.status is Status.FAILED
    assert entry.attempts == 3
    assert entry.last_error is not None
    assert "gave up after 3 attempts" in entry.last_error
    assert [key for key, _ in recorder.failed_hook] == ["down"]


def test_permanent_failure_is_recorded_and_not_retried(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    add(engine, clock, "bad")
    recorder.failures["bad"] = [DeliveryError("550 no such user", permanent=True)]
    deliver_due(engine, clock, settings)
    clock.advance(timedelta(days=1))
    assert deliver_due(engine, clock, settings) == 0
    entry = status(engine, "bad")
    assert entry.status is Status.FAILED
    assert entry.last_error == "550 no such user"
    assert recorder.failed_hook == [("bad", "550 no such user")]


def test_an_unknown_kind_is_a_permanent_failure(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add(engine, clock, "mystery", kind="no-such-kind")
    assert deliver_due(engine, clock, settings) == 1
    entry = status(engine, "mystery")
    assert entry.status is Status.FAILED
    assert entry.last_error == "no handler for kind 'no-such-kind'"


def test_a_handler_bug_is_retried_not_fatal(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    def broken(context: DeliveryContext, entry: OutboxEntry) -> None:
        raise KeyError("oops")

    register_handler("broken", broken)
    try:
        add(engine, clock, "b", kind="broken")
        deliver_due(engine, clock, settings)
    finally:
        _handlers.pop("broken", None)
    entry = status(engine, "b")
    assert entry.status is Status.PENDING
    assert entry.last_error == "KeyError: 'oops'"


def test_after_sent_runs_in_the_transaction_that_marks_the_entry_sent(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    seen: list[str] = []

    def handler(context: DeliveryContext, entry: OutboxEntry) -> AfterSent:
        def after(conn: object) -> None:
            row = conn.execute(select(outbox.c.status).where(outbox.c.id == entry.id))  # type: ignore[attr-defined]
            seen.append(row.scalar_one())

        return after

    register_handler("after", handler)
    try:
        add(engine, clock, "a", kind="after")
        deliver_due(engine, clock, settings)
    finally:
        _handlers.pop("after", None)
    assert seen == ["sent"]  # the update is visible inside the same transaction


def test_a_crashed_workers_claim_is_delivered_once_after_the_lease_expires(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    add(engine, clock, "crash")
    add(engine, clock, "other")
    # a worker claims both and dies before delivering anything
    claimed = claim_due(engine, clock, settings, "dead-worker", 10)
    assert [e.key for e in claimed] == ["crash", "other"]
    assert deliver_due(engine, clock, settings) == 0  # leased: nobody else takes them
    clock.advance(timedelta(seconds=settings.outbox_lease_seconds - 1))
    assert deliver_due(engine, clock, settings) == 0
    clock.advance(timedelta(seconds=1))
    assert deliver_due(engine, clock, settings) == 2
    assert deliver_due(engine, clock, settings) == 0
    assert Counter(recorder.delivered) == {"crash": 1, "other": 1}
    assert status(engine, "crash").attempts == 2  # the lost attempt counts


def test_a_worker_that_lost_its_lease_does_not_overwrite_the_new_owner(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    add(engine, clock, "slow")
    [entry] = claim_due(engine, clock, settings, "slow-worker", 1)
    clock.advance(timedelta(seconds=settings.outbox_lease_seconds))
    [again] = claim_due(engine, clock, settings, "new-worker", 1)
    assert again.attempts == entry.attempts + 1
    # the slow worker finally fails its attempt: the new owner's claim stays intact
    from ekiden.outbox.dispatcher import deliver_one

    recorder.failures["slow"] = [DeliveryError("late", permanent=True)]
    context = DeliveryContext(engine, clock, settings)
    deliver_one(context, "slow-worker", entry)
    assert status(engine, "slow").status is Status.SENDING
    assert deliver_one(context, "new-worker", again) is Status.SENT
    assert status(engine, "slow").status is Status.SENT


def test_concurrent_workers_deliver_each_entry_exactly_once(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    with engine.begin() as conn:
        for n in range(300):
            enqueue(conn, clock, kind="test", key=f"c{n}", payload={})
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            while deliver_due(engine, clock, settings, limit=25, worker=name):
                pass
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = Counter(recorder.delivered)
    assert len(counts) == 300
    assert set(counts.values()) == {1}


def test_backoff_doubles_per_attempt_and_is_capped(settings: Settings) -> None:
    base = settings.outbox_retry_base_seconds
    for attempt in (1, 2, 5):
        wait = backoff(attempt, settings).total_seconds()
        expected = base * 2 ** (attempt - 1)
        assert expected * 0.75 <= wait <= expected * 1.25
    assert backoff(40, settings) <= timedelta(hours=6 * 1.25)


def test_the_worker_runs_the_outbox_as_a_periodic_step() -> None:
    assert "outbox" in [name for name, _ in default_periodic_steps()]


def test_stale_sending_rows_of_other_states_are_not_reclaimed(
    engine: Engine, clock: FrozenClock, settings: Settings, recorder: Recorder
) -> None:
    add(engine, clock, "done")
    deliver_due(engine, clock, settings)
    with engine.begin() as conn:  # a stray old lease on a sent row changes nothing
        conn.execute(update(outbox).values(claimed_until=clock.now() - timedelta(days=1)))
    assert deliver_due(engine, clock, settings) == 0
    assert recorder.delivered == ["done"]
