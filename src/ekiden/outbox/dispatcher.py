"""Delivering due outbox entries: claim with a lease, deliver, record the outcome.

Exactly once, as far as the far side allows:
1. Claiming moves an entry to "sending" with a lease (``claimed_until``) in its own short
   transaction; concurrent workers skip each other's rows (PostgreSQL ``FOR UPDATE SKIP
   LOCKED``; SQLite serialises writers).
2. The handler delivers with no database transaction open.
3. The outcome is committed right after each delivery, together with the handler's
   ``AfterSent`` callback, and only if this worker still holds the lease.

A worker killed between 2 and 3 leaves its entries in "sending"; once the lease expires another
worker delivers them again. Only the entries in flight at that moment (at most
``outbox_concurrency`` per killed worker) can be delivered twice, and a repeat carries the same
Message-ID (built from the message, not the attempt) or the same ``webhook-id``, so the
receiving side can drop the duplicate. A worker whose run outlives half of the lease gives
back what it has not started, so a slow run never races a second worker.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, and_, bindparam, or_, select, update

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.outbox.context import Attempt, DeliveryContext, current_attempt
from ekiden.outbox.handlers import AfterSent, handler_for
from ekiden.outbox.models import DeliveryError, OutboxEntry, Status
from ekiden.outbox.tables import outbox

log = logging.getLogger("ekiden.outbox")

CLAIM_CHUNK = 100
MAX_BACKOFF = timedelta(hours=6)


def worker_name() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def deliver_due(
    engine: Engine,
    clock: Clock,
    settings: Settings,
    *,
    limit: int = 1000,
    worker: str | None = None,
) -> int:
    """Deliver up to ``limit`` due entries; returns how many were attempted (sent, retried
    or failed). This is the worker's periodic step "outbox".

    ``outbox_concurrency`` entries are delivered at a time, each lane with its own pooled
    SMTP connection and HTTP client, so one slow reply does not hold up the rest.
    """
    me = worker or worker_name()
    lanes = Lanes(engine, clock, settings)
    handled = 0
    try:
        while handled < limit:
            claimed = claim_due(engine, clock, settings, me, min(CLAIM_CHUNK, limit - handled))
            if not claimed:
                break
            handled += _deliver_claimed(lanes, me, claimed)
    finally:
        lanes.close()
    return handled


class Lanes:
    """Delivery lanes of one run: a thread pool (when ``outbox_concurrency`` > 1) and one
    DeliveryContext per thread, closed together at the end of the run."""

    def __init__(self, engine: Engine, clock: Clock, settings: Settings) -> None:
        self.engine, self.clock, self.settings = engine, clock, settings
        count = max(1, settings.outbox_concurrency)
        self.executor = (
            ThreadPoolExecutor(count, thread_name_prefix="outbox") if count > 1 else None
        )
        self._local = threading.local()
        self._contexts: list[DeliveryContext] = []
        self._lock = threading.Lock()

    def context(self) -> DeliveryContext:
        context: DeliveryContext | None = getattr(self._local, "context", None)
        if context is None:
            context = DeliveryContext(self.engine, self.clock, self.settings)
            self._local.context = context
            with self._lock:
                self._contexts.append(context)
        return context

    def map(self, task: Callable[[list[OutboxEntry]], int], work: list[list[OutboxEntry]]) -> int:
        if self.executor is None:
            return sum(task(group) for group in work)
        return sum(self.executor.map(task, work))

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        for context in self._contexts:
            context.close()


def outbox_step(engine: Engine, clock: Clock, settings: Settings) -> int:
    """The worker's periodic step: one bounded slice of due deliveries."""
    return deliver_due(engine, clock, settings, limit=500)


def due_condition(now: datetime) -> object:
    return or_(
        and_(outbox.c.status == Status.PENDING, outbox.c.next_attempt_at <= now),
        # a worker died while delivering: its lease ran out, the entry is due again
        and_(outbox.c.status == Status.SENDING, outbox.c.claimed_until <= now),
    )


def claim_due(
    engine: Engine, clock: Clock, settings: Settings, worker: str, limit: int
) -> list[OutboxEntry]:
    """Move up to ``limit`` due entries to "sending" under this worker's lease."""
    now = clock.now()
    picked = (
        select(outbox.c.id)
        .where(due_condition(now))  # type: ignore[arg-type]
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    with engine.begin() as conn:
        rows = conn.execute(
            update(outbox)
            .where(outbox.c.id.in_(picked))
            .values(
                status=Status.SENDING,
                attempts=outbox.c.attempts + 1,
                claimed_at=now,
                claimed_until=now + timedelta(seconds=settings.outbox_lease_seconds),
                claimed_by=worker,
            )
            .returning(*outbox.c)
        ).mappings()
        entries = [OutboxEntry.from_row(row) for row in rows]
    return sorted(entries, key=lambda e: (e.next_attempt_at, e.id))


# Entries of one kind are delivered in groups: a handler's ``prepare`` loads what a group
# needs in a few queries, right before the group's first delivery. Each lane still records
# every outcome right after its delivery, so the entries in flight stay one per lane.
GROUP_SIZE = 25


def groups(entries: Sequence[OutboxEntry], lanes: int) -> list[list[OutboxEntry]]:
    """``entries`` split into groups of one kind (order kept within a kind), small enough
    that every lane gets work and at most ``GROUP_SIZE`` long."""
    by_kind: dict[str, list[OutboxEntry]] = {}
    for entry in entries:
        by_kind.setdefault(entry.kind, []).append(entry)
    size = max(1, min(GROUP_SIZE, -(-len(entries) // max(lanes, 1))))
    return [
        same[start : start + size]
        for same in by_kind.values()
        for start in range(0, len(same), size)
    ]


def _deliver_claimed(lanes: Lanes, worker: str, entries: Sequence[OutboxEntry]) -> int:
    # a run that outlives half of the lease gives back what it has not started
    deadline = time.monotonic() + lanes.settings.outbox_lease_seconds / 2

    def task(group: list[OutboxEntry]) -> int:
        if time.monotonic() > deadline:
            release(lanes.engine, worker, [entry.id for entry in group])
            return 0
        context = lanes.context()
        registered = handler_for(group[0].kind)
        if registered is not None and registered.prepare is not None:
            try:
                registered.prepare(context, group)
            except Exception:  # preparing is an optimisation: deliver one by one instead
                log.exception("preparing %d %r entries failed", len(group), group[0].kind)
        done = 0
        with context.holding_connection():
            for number, entry in enumerate(group):
                if time.monotonic() > deadline:
                    release(lanes.engine, worker, [e.id for e in group[number:]])
                    break
                deliver_one(context, worker, entry)
                done += 1
        return done

    count = max(1, lanes.settings.outbox_concurrency)
    return lanes.map(task, groups(entries, count))


def deliver_one(context: DeliveryContext, worker: str, entry: OutboxEntry) -> Status:
    """Deliver one claimed entry and record the outcome; returns the entry's new status."""
    registered = handler_for(entry.kind)
    if registered is None:
        return _record_failure(context, worker, entry, f"no handler for kind {entry.kind!r}")
    attempt = Attempt(entry)
    token = current_attempt.set(attempt)
    try:
        after_sent = registered.handler(context, entry)
    except DeliveryError as exc:
        if exc.permanent:
            return _record_failure(context, worker, entry, exc.reason)
        return _schedule_retry(context, worker, entry, exc.reason)
    except Exception as exc:  # a handler bug must not stop the other deliveries
        log.exception("outbox handler for %r failed on entry %d", entry.kind, entry.id)
        return _schedule_retry(context, worker, entry, f"{type(exc).__name__}: {exc}")
    finally:
        current_attempt.reset(token)
    return _record_sent(context, worker, entry, attempt.message_id, after_sent)


# Finishing an attempt: only while this worker still holds this attempt's lease. Built once;
# the SET clause comes from the parameters of each execution.
_FINISH = update(outbox).where(
    outbox.c.id == bindparam("held_id"),
    outbox.c.status == Status.SENDING,
    outbox.c.claimed_by == bindparam("held_by"),
    outbox.c.attempts == bindparam("held_attempts"),
)


def _record_sent(
    context: DeliveryContext,
    worker: str,
    entry: OutboxEntry,
    message_id: str | None,
    after_sent: AfterSent | None,
) -> Status:
    with context.transaction() as conn:
        won = _finish(
            conn,
            entry,
            worker,
            status=Status.SENT,
            sent_at=context.clock.now(),
            message_id=message_id,
            last_error=None,
        )
        if won and after_sent is not None:
            after_sent(conn)
    if not won:
        log.warning("outbox entry %d was delivered after this worker lost its lease", entry.id)
    return Status.SENT


def _schedule_retry(
    context: DeliveryContext, worker: str, entry: OutboxEntry, reason: str
) -> Status:
    if entry.attempts >= context.settings.outbox_max_attempts:
        return _record_failure(
            context, worker, entry, f"gave up after {entry.attempts} attempts: {reason}"
        )
    retry_at = context.clock.now() + backoff(entry.attempts, context.settings)
    with context.transaction() as conn:
        _finish(
            conn,
            entry,
            worker,
            status=Status.PENDING,
            next_attempt_at=retry_at,
            last_error=reason[:2000],
        )
    log.info("outbox entry %d failed temporarily (%s); retry at %s", entry.id, reason, retry_at)
    return Status.PENDING


def _record_failure(
    context: DeliveryContext, worker: str, entry: OutboxEntry, reason: str
) -> Status:
    registered = handler_for(entry.kind)
    with context.transaction() as conn:
        won = _finish(conn, entry, worker, status=Status.FAILED, last_error=reason[:2000])
        if won and registered is not None and registered.on_failed is not None:
            registered.on_failed(conn, context.clock, entry, reason)
    log.warning("outbox entry %d (%s) failed permanently: %s", entry.id, entry.kind, reason)
    return Status.FAILED


def _finish(
    conn: Connection, entry: OutboxEntry, worker: str, *, status: Status, **values: object
) -> bool:
    result = conn.execute(
        _FINISH,
        {
            "held_id": entry.id,
            "held_by": worker,
            "held_attempts": entry.attempts,
            "status": status,
            "claimed_at": None,
            "claimed_until": None,
            "claimed_by": None,
            **values,
        },
    )
    return result.rowcount > 0


def release(engine: Engine, worker: str, ids: Sequence[int]) -> None:
    """Give claimed entries back untouched (their attempt does not count)."""
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(outbox)
            .where(
                outbox.c.id.in_(ids),
                outbox.c.status == Status.SENDING,
                outbox.c.claimed_by == worker,
            )
            .values(
                status=Status.PENDING,
                attempts=outbox.c.attempts - 1,
                claimed_at=None,
                claimed_until=None,
                claimed_by=None,
            )
        )


def backoff(attempts: int, settings: Settings) -> timedelta:
    """Exponential backoff with ±25 % jitter: base, 2×base, 4×base … capped at six hours.
    The jitter spreads retries of a provider outage so they do not arrive all at once."""
    base = settings.outbox_retry_base_seconds * 2 ** max(attempts - 1, 0)
    seconds = min(base, MAX_BACKOFF.total_seconds()) * random.uniform(0.75, 1.25)
    return timedelta(seconds=seconds)
