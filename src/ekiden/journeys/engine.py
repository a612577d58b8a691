"""The engine: the worker claims due enrolments and moves each along its journey.

One pass over an enrolment runs its current node and, while no wait stops it, the nodes
after it; the history rows, the enrolment's new node / state / due time and every side
effect of those nodes are written in one transaction (a savepoint per enrolment inside the
batch's transaction). A node that raises rolls all of that back: the enrolment stays where
it was and is retried with backoff, then marked failed. Because side effects leave through
the outbox under keys made of enrolment, node and visit number, a retried or repeated step
never doubles them. Claims use ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of
workers share the work; SQLite serialises writers.

Time: a node runs "at" its due time when the worker is behind (``ekiden worker --once --now``
playing weeks in seconds), so waits chain from when they should have started.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, func, insert, select, update

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.errors import EkidenError
from ekiden.journeys import definition as d
from ekiden.journeys.actions import ACTIONS, ActionContext
from ekiden.journeys.models import LIVE_STATES
from ekiden.journeys.service import definition_of
from ekiden.journeys.tables import enrolment_steps, enrolments, journeys
from ekiden.journeys.waits import wait_until_moment
from ekiden.rules.bind import event_types_of
from ekiden.rules.fields import Catalog, load_catalog
from ekiden.rules.loader import load_contact_data
from ekiden.rules.memory import ContactData, Env, evaluate
from ekiden.rules.model import EventCondition, Filter

log = logging.getLogger("ekiden.journeys")

BATCH = 200
MAX_NODES_PER_PASS = 50  # a long chain of actions continues in the next pass
MAX_ATTEMPTS = 5
_ENDED = {"completed", "exited", "converted", "failed"}


def claim_due(conn: Connection, now: datetime, limit: int) -> list[Row[Any]]:
    """Up to ``limit`` enrolments of active journeys due by ``now``, locked for this
    transaction (other workers skip them on PostgreSQL)."""
    query = (
        select(enrolments)
        .join(journeys, journeys.c.id == enrolments.c.journey_id)
        .where(
            enrolments.c.due_at <= now,
            enrolments.c.state.in_(LIVE_STATES),
            journeys.c.status == "active",
        )
        .order_by(enrolments.c.due_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=enrolments)
    return list(conn.execute(query).all())


def run_due(engine: Engine, clock: Clock, settings: Settings, *, batch: int = BATCH) -> int:
    """Claim one batch of due enrolments and advance each; returns how many were claimed.

    The batch first runs as one transaction with the history and enrolment rows written in
    bulk at the end. Should any step raise, that transaction rolls back whole and the batch
    runs again one enrolment per savepoint, so the failing one is retried later on its own
    and the others go on."""
    try:
        return _run_batch(engine, clock, settings, batch, careful=False)
    except Exception:
        log.info("a journey step failed; running the batch one enrolment at a time")
        return _run_batch(engine, clock, settings, batch, careful=True)


def _run_batch(
    engine: Engine, clock: Clock, settings: Settings, batch: int, *, careful: bool
) -> int:
    with engine.begin() as conn:
        claimed = claim_due(conn, clock.now(), batch)
        if not claimed:
            return 0
        catalog = load_catalog(conn)
        definitions: dict[tuple[int, int], d.Journey] = {}
        writes = None if careful else Writes()
        for row in claimed:
            if writes is not None:
                advance(
                    conn,
                    clock,
                    settings,
                    row.id,
                    catalog=catalog,
                    definitions=definitions,
                    row=row,
                    writes=writes,
                )
                continue
            try:
                with conn.begin_nested():
                    advance(
                        conn,
                        clock,
                        settings,
                        row.id,
                        catalog=catalog,
                        definitions=definitions,
                        row=row,
                    )
            except EkidenError as exc:  # a refusal will not change on retry
                _failed(conn, clock, row.id, exc.message, permanent=True)
            except Exception as exc:
                log.exception("journey step failed for enrolment %s", row.id)
                _failed(conn, clock, row.id, f"{type(exc).__name__}: {exc}")
        if writes is not None:
            writes.flush(conn)
    return len(claimed)


_UPDATED = (
    "node",
    "state",
    "steps",
    "attempts",
    "last_error",
    "wait_started_at",
    "wait_deadline",
    "due_at",
    "ended_at",
    "entry_slot",
)


@dataclass
class Writes:
    """History rows and enrolment updates of a batch, written in bulk at its end."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)

    def flush(self, conn: Connection) -> None:
        if self.steps:
            conn.execute(insert(enrolment_steps), self.steps)
        if self.updates:
            statement = (
                update(enrolments)
                .where(enrolments.c.id == bindparam("b_id"))
                .values({name: bindparam(f"b_{name}") for name in _UPDATED})
            )
            conn.execute(
                statement,
                [{f"b_{k}": v for k, v in values.items()} for values in self.updates],
            )

    def emails(self, contact_id: int, journey_id: int, since: datetime) -> int:
        return sum(
            1
            for s in self.steps
            if s["contact_id"] == contact_id
            and s["journey_id"] == journey_id
            and s["node_type"] == "send_email"
            and s["result"] == "next"
            and s["at"] > since
        )


def _failed(
    conn: Connection, clock: Clock, enrolment_id: int, error: str, *, permanent: bool = False
) -> None:
    """Count a failed try; retry later with backoff, or give up after MAX_ATTEMPTS."""
    row = conn.execute(select(enrolments).where(enrolments.c.id == enrolment_id)).one()
    attempts = row.attempts + 1
    now = clock.now()
    if permanent or attempts >= MAX_ATTEMPTS:
        conn.execute(
            insert(enrolment_steps).values(
                enrolment_id=row.id,
                journey_id=row.journey_id,
                contact_id=row.contact_id,
                node=row.node,
                node_type="error",
                result="failed",
                at=now,
                detail={"error": error, "attempts": attempts},
            )
        )
        values: dict[str, Any] = {"state": "failed", "due_at": None, "ended_at": now}
        if row.entry_slot == "live":
            values["entry_slot"] = None
    else:
        values = {"due_at": now + timedelta(minutes=2**attempts)}
    conn.execute(
        update(enrolments)
        .where(enrolments.c.id == enrolment_id)
        .values(attempts=attempts, last_error=error[:2000], **values)
    )


@dataclass
class _Pass:
    """An enrolment as it moves during one pass."""

    id: int
    journey_id: int
    contact_id: int
    node: str
    state: str
    visit: int
    anchor: datetime
    due_at: datetime | None = None
    wait_started_at: datetime | None = None
    wait_deadline: datetime | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    emails_sent: int = 0

    def record(self, node: d.Node, result: str, at: datetime, **detail: Any) -> None:
        self.steps.append(
            {
                "enrolment_id": self.id,
                "journey_id": self.journey_id,
                "contact_id": self.contact_id,
                "node": node.id,
                "node_type": node.type,
                "result": result,
                "at": at,
                "detail": {k: v for k, v in detail.items() if v is not None},
            }
        )


def _types(journey: d.Journey, node: d.Node) -> set[str]:
    """The event types the filters checked at ``node`` look at."""
    filters: list[Filter] = [f for f in (journey.goal, journey.exit_when) if f is not None]
    if isinstance(node, d.Branch):
        filters.extend(case.when for case in node.branches)
    if isinstance(node, d.WaitFor):
        if node.condition is not None:
            filters.append(node.condition)
        if node.event is not None:
            return set().union(*map(event_types_of, filters)) | {node.event.event}
    return set().union(*map(event_types_of, filters)) if filters else set()


def _needs_contact(journey: d.Journey, node: d.Node) -> bool:
    """Does running ``node`` look at the contact? (Loading it is most of a step's cost.)"""
    if journey.goal is not None or journey.exit_when is not None:
        return True
    return isinstance(node, d.Branch | d.WaitFor | d.WaitUntil)


def advance(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    enrolment_id: int,
    *,
    catalog: Catalog | None = None,
    definitions: dict[tuple[int, int], d.Journey] | None = None,
    row: Row[Any] | None = None,
    writes: Writes | None = None,
) -> None:
    """Run the enrolment's due node(s) now; a no-op unless it is live and due. ``row``:
    the enrolment as just claimed (locked), saving a read; ``writes``: collect the history
    and the enrolment's new state there instead of writing them now."""
    if row is None:
        row = conn.execute(select(enrolments).where(enrolments.c.id == enrolment_id)).first()
    now = clock.now()
    if row is None or row.state not in LIVE_STATES or row.due_at is None or row.due_at > now:
        return
    cache = {} if definitions is None else definitions
    journey = cache.get((row.journey_id, row.version))
    if journey is None:
        journey = cache[row.journey_id, row.version] = definition_of(
            conn, row.journey_id, row.version
        )
    env = Env(catalog=catalog or load_catalog(conn), now=now, zone=settings.zone)
    run = _Pass(
        id=row.id,
        journey_id=row.journey_id,
        contact_id=row.contact_id,
        node=row.node,
        state=row.state,
        visit=row.steps if row.state == "waiting" else row.steps + 1,
        anchor=min(row.due_at, now),
        wait_started_at=row.wait_started_at,
        wait_deadline=row.wait_deadline,
    )
    for _ in range(MAX_NODES_PER_PASS):
        node = journey.node(run.node)
        data = (
            load_contact_data(conn, run.contact_id, event_types=_types(journey, node))
            if _needs_contact(journey, node)
            else None
        )
        if data is not None and _finished_early(journey, node, data, env, run):
            break
        target = _run_node(conn, clock, settings, journey, node, data, env, run, writes)
        if run.state == "waiting" or run.state in _ENDED:
            break
        if target is None:
            run.state = "completed"
            break
        run.node, run.visit, run.state = target, run.visit + 1, "running"
        run.wait_started_at = run.wait_deadline = None
    else:
        run.due_at = now  # a long chain: go on in the next pass
    _save(conn, now, run, row.entry_slot, writes)


def _finished_early(
    journey: d.Journey, node: d.Node, data: ContactData, env: Env, run: _Pass
) -> bool:
    """Goal and exit criteria, checked before every node."""
    if data.fields.get("merged_into_id") is not None:
        run.state = "exited"
        run.record(node, "exited", env.now, reason="contact merged")
        return True
    if journey.goal is not None and evaluate(journey.goal, data, env):
        run.state = "converted"
        run.record(node, "converted", env.now)
        return True
    if journey.exit_when is not None and evaluate(journey.exit_when, data, env):
        run.state = "exited"
        run.record(node, "exited", env.now, reason="exit_when")
        return True
    return False


def _run_node(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    journey: d.Journey,
    node: d.Node,
    data: ContactData | None,
    env: Env,
    run: _Pass,
    writes: Writes | None,
) -> str | None:
    """Run ``node``; returns the next node's id (None: the end), or sets a waiting / ended
    state on ``run``."""
    at = run.anchor
    if isinstance(node, d.Exit):
        run.state = "exited"
        run.record(node, "exited", at, reason="exit node")
        return None
    if isinstance(node, d.Wait):
        return _wait(node, None, env, run, settings)
    if isinstance(node, d.WaitUntil | d.WaitFor):
        assert data is not None
        return _wait(node, data, env, run, settings)
    if isinstance(node, d.Branch):
        assert data is not None
        for i, case in enumerate(node.branches):
            if evaluate(case.when, data, env):
                run.record(node, f"branches[{i}]", at)
                return case.next
        run.record(node, "otherwise", at)
        return node.otherwise
    if isinstance(node, d.Split):
        return _split(node, run)
    cap = journey.frequency_cap
    if (
        isinstance(node, d.SendEmail)
        and cap is not None
        and _capped(conn, cap, run, env.now, writes)
    ):
        run.record(node, "capped", at, email=node.email)
        return node.next
    action = ACTIONS[node.type]
    ctx = ActionContext(
        conn=conn,
        clock=clock,
        settings=settings,
        journey=journey,
        journey_id=run.journey_id,
        enrolment_id=run.id,
        contact_id=run.contact_id,
        visit=run.visit,
    )
    detail = action(ctx, node)
    if isinstance(node, d.SendEmail):
        run.emails_sent += 1
    run.record(node, "next", at, **detail)
    following: str | None = getattr(node, "next", None)
    return following


def _capped(
    conn: Connection, cap: d.FrequencyCap, run: _Pass, now: datetime, writes: Writes | None
) -> bool:
    sent = conn.execute(
        select(func.count())
        .select_from(enrolment_steps)
        .where(
            enrolment_steps.c.contact_id == run.contact_id,
            enrolment_steps.c.journey_id == run.journey_id,
            enrolment_steps.c.node_type == "send_email",
            enrolment_steps.c.result == "next",
            enrolment_steps.c.at > now - cap.per,
        )
    ).scalar_one()
    pending = 0 if writes is None else writes.emails(run.contact_id, run.journey_id, now - cap.per)
    return int(sent) + pending + run.emails_sent >= cap.emails


def _split(node: d.Split, run: _Pass) -> str:
    """A random path that is the same on every retry: a hash of enrolment, node and visit."""
    digest = hashlib.blake2b(f"{run.id}:{node.id}:{run.visit}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest) / 2**64 * sum(p.weight for p in node.paths)
    for i, path in enumerate(node.paths):
        point -= path.weight
        if point < 0 or i == len(node.paths) - 1:
            run.record(node, f"paths[{i}]", run.anchor)
            return path.next
    raise AssertionError("unreachable")  # pragma: no cover


def _wait(
    node: d.Wait | d.WaitUntil | d.WaitFor,
    data: ContactData | None,
    env: Env,
    run: _Pass,
    settings: Settings,
) -> str | None:
    arriving = run.state != "waiting"
    if arriving:
        run.wait_started_at = run.anchor
        if isinstance(node, d.Wait):
            run.wait_deadline = run.anchor + node.duration
        elif isinstance(node, d.WaitFor):
            run.wait_deadline = run.anchor + node.timeout
        else:
            assert data is not None
            run.wait_deadline = wait_until_moment(
                node, run.anchor, env.now, data.fields, data.custom, settings.zone
            )
    assert run.wait_started_at is not None
    assert run.wait_deadline is not None
    deadline = run.wait_deadline
    run.state = "running"  # until it turns out the wait goes on
    if (
        isinstance(node, d.WaitFor)
        and data is not None
        and _happened(node, data, env, run.wait_started_at, deadline)
    ):
        run.record(node, "next", min(env.now, deadline))
        return node.next
    if deadline <= env.now:
        if isinstance(node, d.WaitFor):
            run.record(node, "on_timeout", deadline)
            run.anchor = deadline
            return node.on_timeout
        run.record(node, "next", deadline)
        run.anchor = deadline
        return node.next
    if arriving:
        run.record(node, "waiting", run.anchor, until=deadline.isoformat())
    run.state = "waiting"
    run.due_at = deadline
    return None


def _happened(
    node: d.WaitFor, data: ContactData, env: Env, started: datetime, deadline: datetime
) -> bool:
    """Did the awaited event occur (or does the condition hold) within the wait?"""
    until = min(env.now, deadline)
    if node.event is not None:
        cond = EventCondition(
            event=node.event.event,
            where=node.event.where,
            include_machine=node.event.include_machine,
            since=started,
        )
        return evaluate(cond, data, Env(catalog=env.catalog, now=until, zone=env.zone))
    assert node.condition is not None
    return env.now <= deadline and evaluate(node.condition, data, env)


def _save(
    conn: Connection, now: datetime, run: _Pass, slot: str | None, writes: Writes | None
) -> None:
    values: dict[str, Any] = {
        "id": run.id,
        "node": run.node,
        "state": run.state,
        "steps": run.visit,
        "attempts": 0,
        "last_error": None,
        "wait_started_at": run.wait_started_at,
        "wait_deadline": run.wait_deadline,
        "due_at": run.due_at or now,
        "ended_at": None,
        "entry_slot": slot,
    }
    if run.state in _ENDED:
        values.update(due_at=None, ended_at=now, wait_started_at=None, wait_deadline=None)
        if slot == "live":  # after_exit: the contact may enter again
            values["entry_slot"] = None
    elif run.state == "waiting":
        values["due_at"] = run.due_at
    if writes is not None:
        writes.steps.extend(run.steps)
        writes.updates.append(values)
        return
    if run.steps:
        conn.execute(insert(enrolment_steps), run.steps)
    del values["id"]
    conn.execute(update(enrolments).where(enrolments.c.id == run.id).values(**values))
