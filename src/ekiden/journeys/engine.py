"""The engine: the worker claims due enrolments and moves each along its journey.

One pass over an enrolment runs its current node and, while no wait stops it, the nodes
after it; the history rows, the enrolment's new node / state / due time and every side
effect of those nodes are written in one transaction. A claimed batch runs node by node
(``advance_many``): the enrolments standing at the same node of the same journey version run
it together, reading their contacts and writing the busiest actions' rows set-based
(``ekiden.journeys.bulk``); history and enrolment rows are written in bulk at the end (COPY
and one ``UPDATE … FROM unnest`` on PostgreSQL). Should anything raise, the batch's
transaction rolls back whole and the batch runs again one enrolment per savepoint
(``advance``): a node that raises then rolls back only its enrolment's pass, which stays where
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Engine, Row, bindparam, func, insert, select, update

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.errors import EkidenError, NotFound
from ekiden.journeys import definition as d
from ekiden.journeys.actions import ACTIONS, ActionContext
from ekiden.journeys.bulk import bulk_action, group_by, load_contacts_data
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

BATCH = 500  # enrolments per claim: per-batch costs (catalog, stage order) amortised
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
        if not careful:
            writes = Writes()
            advance_many(
                conn, clock, settings, claimed, catalog=catalog, definitions=definitions,
                writes=writes,
            )  # fmt: skip
            writes.flush(conn)
            return len(claimed)
        for row in claimed:
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
    # passes still in flight (their steps are not in ``steps`` yet), by contact and journey
    in_flight: dict[tuple[int, int], list[_Pass]] = field(default_factory=dict)

    def flush(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            _copy_steps(conn, self.steps)
            _update_enrolments_pg(conn, self.updates)
            return
        if self.steps:
            conn.execute(insert(enrolment_steps), self.steps)
        if self.updates:
            _update_enrolments(conn, self.updates)

    def emails(self, contact_id: int, journey_id: int, since: datetime, run: _Pass) -> int:
        """Emails of this contact and journey sent in this batch so far by other passes."""
        steps = [
            s for s in self.steps if s["contact_id"] == contact_id and s["journey_id"] == journey_id
        ]
        for other in self.in_flight.get((contact_id, journey_id), []):
            if other is not run:
                steps.extend(other.steps)
        return sum(
            1
            for s in steps
            if s["node_type"] == "send_email" and s["result"] == "next" and s["at"] > since
        )


def _update_enrolments(conn: Connection, updates: list[dict[str, Any]]) -> None:
    statement = (
        update(enrolments)
        .where(enrolments.c.id == bindparam("b_id"))
        .values({name: bindparam(f"b_{name}") for name in _UPDATED})
    )
    conn.execute(statement, [{f"b_{k}": v for k, v in values.items()} for values in updates])


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()  # as the engine's JSON columns write it


_STEP_COLUMNS = (
    "enrolment_id", "journey_id", "contact_id", "node", "node_type", "result", "at", "detail",
)  # fmt: skip
_COPY_STEPS = f"COPY enrolment_steps ({', '.join(_STEP_COLUMNS)}) FROM STDIN"


def _naive(moment: datetime | None) -> datetime | None:
    """What ``UTCDateTime`` stores: naive UTC."""
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def _copy_steps(conn: Connection, steps: list[dict[str, Any]]) -> None:
    """History rows by COPY: one stream instead of one INSERT per row."""
    if not steps:
        return
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    with raw.cursor() as cursor, cursor.copy(_COPY_STEPS) as copy:
        for s in steps:
            copy.write_row(
                (
                    s["enrolment_id"], s["journey_id"], s["contact_id"], s["node"],
                    s["node_type"], s["result"], _naive(s["at"]), Jsonb(s["detail"], dumps=_dumps),
                )
            )  # fmt: skip


_UPDATE_PG = (
    "UPDATE enrolments AS e SET node = v.node, state = v.state, steps = v.steps, "
    "attempts = v.attempts, last_error = v.last_error, wait_started_at = v.wait_started_at, "
    "wait_deadline = v.wait_deadline, due_at = v.due_at, ended_at = v.ended_at, "
    "entry_slot = v.entry_slot "
    "FROM unnest(%(id)s::bigint[], %(node)s::varchar[], %(state)s::varchar[], "
    "%(steps)s::int[], %(attempts)s::int[], %(last_error)s::text[], "
    "%(wait_started_at)s::timestamp[], %(wait_deadline)s::timestamp[], "
    "%(due_at)s::timestamp[], %(ended_at)s::timestamp[], %(entry_slot)s::varchar[]) "
    "AS v(id, node, state, steps, attempts, last_error, wait_started_at, wait_deadline, "
    "due_at, ended_at, entry_slot) WHERE e.id = v.id"
)
_MOMENTS = ("wait_started_at", "wait_deadline", "due_at", "ended_at")


def _update_enrolments_pg(conn: Connection, updates: list[dict[str, Any]]) -> None:
    """All of a batch's enrolment updates in one statement: arrays joined by ``unnest``."""
    if not updates:
        return
    columns: dict[str, list[Any]] = {name: [u[name] for u in updates] for name in ("id", *_UPDATED)}
    for name in _MOMENTS:
        columns[name] = [_naive(m) for m in columns[name]]
    conn.exec_driver_sql(_UPDATE_PG, columns)


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


@dataclass
class _Flight:
    """An enrolment moving through ``advance_many``."""

    run: _Pass
    journey: d.Journey
    version: int
    slot: str | None


def _definition(
    conn: Connection, cache: dict[tuple[int, int], d.Journey], journey_id: int, version: int
) -> d.Journey:
    journey = cache.get((journey_id, version))
    if journey is None:
        journey = cache[journey_id, version] = definition_of(conn, journey_id, version)
    return journey


def advance_many(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    rows: Sequence[Row[Any]],
    *,
    catalog: Catalog,
    definitions: dict[tuple[int, int], d.Journey],
    writes: Writes,
) -> None:
    """``advance`` for a claimed batch, node by node: the enrolments standing at the same
    node of the same journey version run it together, so that reading contacts and the
    busiest actions take a few statements per group instead of a few per enrolment
    (``ekiden.journeys.bulk``). Each enrolment takes the same path, writes the same rows and
    enqueues under the same keys as it would alone; everything goes into ``writes``."""
    now = clock.now()
    env = Env(catalog=catalog, now=now, zone=settings.zone)
    flights: list[_Flight] = []
    for row in rows:
        if row.state not in LIVE_STATES or row.due_at is None or row.due_at > now:
            continue
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
        journey = _definition(conn, definitions, row.journey_id, row.version)
        flights.append(_Flight(run, journey, row.version, row.entry_slot))
        writes.in_flight.setdefault((row.contact_id, row.journey_id), []).append(run)
    active = flights
    for _ in range(MAX_NODES_PER_PASS):
        if not active:
            break
        data = _contacts_for(conn, active)
        going: list[_Flight] = []
        groups = group_by(active, lambda f: (f.run.journey_id, f.version, f.run.node))
        for group in groups.values():
            journey = group[0].journey
            node = journey.node(group[0].run.node)
            runnable: list[tuple[_Flight, ContactData | None]] = []
            for flight in group:
                contact = data.get(flight.run.contact_id)
                if _needs_contact(journey, node):
                    if contact is None:
                        raise NotFound(f"no contact with id {flight.run.contact_id}")
                    if _finished_early(journey, node, contact, env, flight.run):
                        continue
                runnable.append((flight, contact))
            targets = _run_group(conn, clock, settings, journey, node, runnable, env, writes)
            for (flight, _), target in zip(runnable, targets, strict=True):
                run = flight.run
                if run.state == "waiting" or run.state in _ENDED:
                    continue
                if target is None:
                    run.state = "completed"
                    continue
                run.node, run.visit, run.state = target, run.visit + 1, "running"
                run.wait_started_at = run.wait_deadline = None
                going.append(flight)
        active = going
    else:
        for flight in active:
            flight.run.due_at = now  # a long chain: go on in the next pass
    writes.in_flight.clear()
    for flight in flights:
        _save(conn, now, flight.run, flight.slot, writes)


def _contacts_for(conn: Connection, flights: Sequence[_Flight]) -> dict[int, ContactData]:
    """The contacts the next node of these enrolments looks at, read together."""
    needing = [f for f in flights if _needs_contact(f.journey, f.journey.node(f.run.node))]
    if not needing:
        return {}
    types: set[str] = set()
    for f in needing:
        types |= _types(f.journey, f.journey.node(f.run.node))
    return load_contacts_data(conn, [f.run.contact_id for f in needing], event_types=types)


def _run_group(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    journey: d.Journey,
    node: d.Node,
    runnable: list[tuple[_Flight, ContactData | None]],
    env: Env,
    writes: Writes,
) -> list[str | None]:
    """Run ``node`` for each enrolment of the group; the next node of each (None: the end)."""
    if not runnable:
        return []
    bulk = bulk_action(node.type)
    if bulk is None or (isinstance(node, d.SendEmail) and journey.frequency_cap is not None):
        return [
            _run_node(conn, clock, settings, journey, node, contact, env, flight.run, writes)
            for flight, contact in runnable
        ]
    contexts = [
        ActionContext(
            conn=conn,
            clock=clock,
            settings=settings,
            journey=journey,
            journey_id=flight.run.journey_id,
            enrolment_id=flight.run.id,
            contact_id=flight.run.contact_id,
            visit=flight.run.visit,
        )
        for flight, _ in runnable
    ]
    details = bulk(contexts, node)
    targets: list[str | None] = []
    for (flight, contact), detail in zip(runnable, details, strict=True):
        run = flight.run
        if detail is None:  # left to the one-row action
            targets.append(
                _run_node(conn, clock, settings, journey, node, contact, env, run, writes)
            )
            continue
        if isinstance(node, d.SendEmail):
            run.emails_sent += 1
        run.record(node, "next", run.anchor, **detail)
        targets.append(getattr(node, "next", None))
    return targets


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
    pending = (
        0 if writes is None else writes.emails(run.contact_id, run.journey_id, now - cap.per, run)
    )
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
