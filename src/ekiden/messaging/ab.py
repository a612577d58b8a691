"""A/B tests: variants to a test share, a winner by human unique clicks or opens after a
time window, the winner to the rest.

When a send with a test is written out, each contact of the test share gets a variant
(``sends.ab_assignment``, deterministic) and is queued; the rest are ``held``. The worker's
"ab" step, once ``window_hours`` have passed since the send was written, compares the
variants, stores the result with its significance, and releases the held messages with the
winner's subject / version, in batches.

Significance: a two-sided two-proportion z-test of the winner against the runner-up
(pooled standard error); ``significant`` means p < 0.05. The winner is the higher rate
whatever the p-value (waiting longer is the marketer's choice, not the product's).
"""

from __future__ import annotations

import math
from datetime import timedelta
from statistics import NormalDist

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, RowMapping, func, select, update

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.messaging.metrics import event_of_message
from ekiden.messaging.sends import enqueue_messages
from ekiden.messaging.sends_models import AbTest
from ekiden.messaging.sends_tables import email_messages, email_sends
from ekiden.tracking.tables import events

RELEASE_BATCH = 1000
EVENT_OF_METRIC = {"clicks": "email_clicked", "opens": "email_opened"}


class VariantResult(BaseModel):
    name: str
    sent: int
    converted: int
    rate: float


class AbResult(BaseModel):
    metric: str
    variants: list[VariantResult]
    winner: str
    runner_up: str
    z: float | None
    p_value: float | None
    significant: bool


def two_proportion_z(hits_a: int, n_a: int, hits_b: int, n_b: int) -> tuple[float, float] | None:
    """(z, two-sided p) for the difference of two proportions; None when undefined
    (an empty group, or no variation at all)."""
    if n_a == 0 or n_b == 0:
        return None
    pooled = (hits_a + hits_b) / (n_a + n_b)
    error = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if error == 0:
        return None
    z = (hits_a / n_a - hits_b / n_b) / error
    return z, 2 * (1 - NormalDist().cdf(abs(z)))


def ab_results(conn: Connection, send_id: int, test: AbTest) -> AbResult:
    """The test's standing now: per variant, messages sent and messages with a human event
    of the metric; the winner (ties: the earlier variant) and its significance."""
    scope = (email_messages.c.send_id == send_id, email_messages.c.variant.is_not(None))
    sent: dict[str, int] = dict(
        conn.execute(
            select(email_messages.c.variant, func.count())
            .where(*scope, email_messages.c.status.in_(("sent", "bounced")))
            .group_by(email_messages.c.variant)
        ).all()
    )
    converted: dict[str, int] = dict(
        conn.execute(
            select(email_messages.c.variant, func.count(func.distinct(email_messages.c.id)))
            .select_from(email_messages.join(events, event_of_message()))
            .where(
                *scope,
                events.c.type == EVENT_OF_METRIC[test.metric],
                events.c.machine.is_(False),
            )
            .group_by(email_messages.c.variant)
        ).all()
    )
    results = []
    for variant in test.variants:
        n, hits = int(sent.get(variant.name, 0)), int(converted.get(variant.name, 0))
        results.append(
            VariantResult(name=variant.name, sent=n, converted=hits, rate=hits / n if n else 0.0)
        )
    ranked = sorted(results, key=lambda r: -r.rate)  # stable: ties keep the variants' order
    best, second = ranked[0], ranked[1]
    test_stat = two_proportion_z(best.converted, best.sent, second.converted, second.sent)
    z, p = (None, None) if test_stat is None else test_stat
    return AbResult(
        metric=test.metric,
        variants=results,
        winner=best.name,
        runner_up=second.name,
        z=None if z is None else round(z, 4),
        p_value=None if p is None else round(p, 6),
        significant=p is not None and p < 0.05,
    )


def _due_test(conn: Connection, clock: Clock) -> RowMapping | None:
    query = (
        select(email_sends)
        .where(email_sends.c.status == "testing")
        .order_by(email_sends.c.dispatched_at, email_sends.c.id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    now = clock.now()
    for row in conn.execute(query).mappings():
        test = AbTest.model_validate(row["ab"])
        if row["ab_decided_at"] is not None:
            return row
        if row["dispatched_at"] + timedelta(hours=test.window_hours) <= now:
            return row
    return None


def ab_step(engine: Engine, clock: Clock, settings: Settings) -> int:
    """The worker's "ab" step: decide one test whose window has ended, or release one batch
    of held messages to a decided winner. Returns messages released (1 for a decision or a
    finished send, so the worker comes back; 0 when nothing is due)."""
    del settings
    with engine.begin() as conn:
        send = _due_test(conn, clock)
        if send is None:
            return 0
        test = AbTest.model_validate(send["ab"])
        if send["ab_decided_at"] is None:
            result = ab_results(conn, int(send["id"]), test)
            conn.execute(
                update(email_sends)
                .where(email_sends.c.id == send["id"])
                .values(
                    ab_winner=result.winner,
                    ab_decided_at=clock.now(),
                    ab_result=result.model_dump(mode="json"),
                )
            )
            return 1
        return max(_release_batch(conn, clock, send, test), 1)


def _release_batch(conn: Connection, clock: Clock, send: RowMapping, test: AbTest) -> int:
    send_id = int(send["id"])
    winner = next(v for v in test.variants if v.name == send["ab_winner"])
    held = list(
        conn.execute(
            select(email_messages.c.id)
            .where(email_messages.c.send_id == send_id, email_messages.c.status == "held")
            .order_by(email_messages.c.id)
            .limit(RELEASE_BATCH)
        ).scalars()
    )
    if not held:
        conn.execute(update(email_sends).where(email_sends.c.id == send_id).values(status="sent"))
        return 0
    conn.execute(
        update(email_messages)
        .where(email_messages.c.id.in_(held))
        .values(
            status="queued",
            variant=winner.name,
            template_version=winner.template_version or send["template_version"],
            queued_at=clock.now(),
        )
    )
    released = conn.execute(
        select(email_messages.c.id, email_messages.c.contact_id).where(
            email_messages.c.id.in_(held)
        )
    ).all()
    enqueue_messages(conn, clock, send_id, released)
    return len(released)
