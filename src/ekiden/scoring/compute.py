"""Deriving the ledger and the values, set-based, for some contacts or the whole population.

One function serves every path: the worker's incremental step (the contacts that just
changed), the time-driven sweep (decay, expiry, relative dates; batches of contacts) and the
full recompute after a rule change (everyone). So an incremental result is, by construction,
what a full recompute gives.

Per score: event rules are re-derived from the events (each human event matching the rule
earns its points; a cap limits the points per contact per fixed period), profile rules keep
one award per matching contact (dated when it first matched), then each contact's value is
the sum of the awards' current worth (half-life decay, expiry) within the score's bounds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Float,
    Integer,
    MetaData,
    Select,
    Table,
    and_,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.db.schema import Id
from ekiden.rules.fields import load_catalog
from ekiden.rules.model import EventCondition, parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter, event_matches
from ekiden.scoring.tables import (
    contact_scores,
    score_awards,
    score_definitions,
    score_history,
    score_rules,
)
from ekiden.segments.tables import dirty_contacts
from ekiden.tracking.tables import events

DAY = 86400.0
# SQLite's unixepoch() (3.38+) gives the whole seconds strftime('%s') gives, faster
_UNIXEPOCH = sqlite3.sqlite_version_info >= (3, 38, 0)
# A change smaller than this is rounding noise, not a change of the score.
EPSILON = 1e-6
# History records every change of at least this much caused by new matches; decay alone is
# recorded when it moves the score across a whole number.
HISTORY_STEP = 0.01

_scratch_meta = MetaData()
_values = Table(
    "score_values_scratch",
    _scratch_meta,
    Column("contact_id", Id, primary_key=True),
    Column("value", Float, nullable=False),
    prefixes=["TEMPORARY"],
)


def epoch(expr: Any, dialect: str) -> Any:
    """Seconds since 1970 of a stored (naive UTC) timestamp."""
    if dialect == "postgresql":
        return func.extract("epoch", expr)
    if _UNIXEPOCH:
        return func.unixepoch(expr)  # the same whole seconds, without formatting text
    return cast(func.strftime("%s", expr), Integer)


def worth_now(now: datetime, dialect: str) -> Any:
    """What one award counts at ``now`` (an expression over score_awards and score_rules)."""
    age = literal(now.timestamp()) - epoch(score_awards.c.awarded_at, dialect)
    return score_awards.c.points * case(
        (
            and_(
                score_rules.c.expires_after_days.is_not(None),
                age >= score_rules.c.expires_after_days * DAY,
            ),
            0.0,
        ),
        (
            score_rules.c.half_life_days.is_not(None),
            func.power(0.5, age / (score_rules.c.half_life_days * DAY)),
        ),
        else_=1.0,
    )


def recompute(
    conn: Connection,
    clock: Clock,
    zone: ZoneInfo,
    *,
    contact_ids: Sequence[int] | None = None,
    score_keys: Iterable[str] | None = None,
    sweep: bool = False,
    mark_changed: bool = True,
) -> int:
    """Bring the ledger and values of ``contact_ids`` (everyone when None) up to date for
    ``score_keys`` (every score when None). Returns how many (contact, score) values changed.

    ``sweep``: time passed, nothing else; history then records whole-number changes only.
    ``mark_changed``: queue contacts whose value changed for the segment refresh.
    """
    if contact_ids is not None and not contact_ids:
        return 0
    dialect = conn.dialect.name
    only = tuple(sorted(set(contact_ids))) if contact_ids is not None else None
    query = select(score_definitions).order_by(score_definitions.c.id)
    if score_keys is not None:
        query = query.where(score_definitions.c.key.in_(sorted(set(score_keys))))
    if dialect == "postgresql":
        # a full recompute or sweep excludes the incremental steps of other workers for its
        # duration (they would derive the same awards twice); increments share the lock
        query = query.with_for_update(read=only is not None and not sweep)
    definitions = conn.execute(query).all()
    if not definitions:
        return 0
    now = clock.now()
    env = SqlEnv(catalog=load_catalog(conn), now=now, zone=zone, dialect=dialect, only=only)
    with _whole_population_settings(conn, whole=only is None):
        # scratch tables live in the transaction: an error rolls their creation back with it
        _values.create(conn)
        changed = 0
        for definition in definitions:
            rules = conn.execute(
                select(score_rules).where(score_rules.c.score_id == definition.id)
            ).all()
            _derive_awards(conn, definition.id, rules, env)
            if only is None:
                # whole-population writes change these tables' sizes by orders of magnitude
                # within the transaction; plans made on the old statistics would be ruinous
                _analyze(conn, score_awards)
                _analyze(conn, contact_scores)
            changed += _write_values(conn, definition, env, sweep=sweep, mark_changed=mark_changed)
        _values.drop(conn)
    return changed


# memory for the sorts and hashes of a whole-population pass (caps sort every candidate
# event; the ledger is written in contact order): PostgreSQL's work_mem for this transaction
# and SQLite's page cache for this connection are raised to it while the pass runs
_WHOLE_MEMORY_KIB = 128 * 1024


@contextmanager
def _whole_population_settings(conn: Connection, *, whole: bool) -> Iterator[None]:
    if not whole:
        yield
        return
    if conn.dialect.name == "postgresql":
        # For the whole population every join is large: hash joins are right, and a nested
        # loop planned on stale statistics (a table emptied or filled in this transaction)
        # would take hours. SET LOCAL: for this transaction only, and put back below.
        nestloop, work_mem = conn.exec_driver_sql(
            "SELECT current_setting('enable_nestloop'), "
            "(SELECT setting::bigint FROM pg_settings WHERE name = 'work_mem')"
        ).one()
        conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
        if work_mem < _WHOLE_MEMORY_KIB:
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{_WHOLE_MEMORY_KIB}kB'")
        yield
        conn.exec_driver_sql(f"SET LOCAL enable_nestloop = {'on' if nestloop == 'on' else 'off'}")
        if work_mem < _WHOLE_MEMORY_KIB:
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{int(work_mem)}kB'")
        return
    # SQLite: a negative cache_size is in KiB; the pool reuses connections, so put it back
    cache = int(conn.exec_driver_sql("PRAGMA cache_size").scalar_one())
    if cache >= 0:  # in pages
        kib = cache * int(conn.exec_driver_sql("PRAGMA page_size").scalar_one()) // 1024
    else:
        kib = -cache
    if kib >= _WHOLE_MEMORY_KIB:
        yield
        return
    conn.exec_driver_sql(f"PRAGMA cache_size = -{_WHOLE_MEMORY_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size = {cache}")


def _analyze(conn: Connection, table: Table) -> None:
    """PostgreSQL plans joins well only once it knows the tables' sizes (temporary tables are
    never analyzed automatically; ANALYZE counts this transaction's own rows)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")  # a constant name, never input


def _in_scope(column: Any, env: SqlEnv) -> ColumnElement[bool]:
    return column.in_(env.only) if env.only is not None else true()


def _derive_awards(conn: Connection, score_id: int, rules: Sequence[Any], env: SqlEnv) -> None:
    dropped = [r.id for r in rules if not r.enabled]
    event_rules = [r for r in rules if r.enabled and r.kind == "event"]
    if dropped:
        conn.execute(
            delete(score_awards).where(
                score_awards.c.rule_id.in_(dropped), _in_scope(score_awards.c.contact_id, env)
            )
        )
    _award_events(conn, score_id, event_rules, env)
    for rule in rules:
        if rule.enabled and rule.kind == "profile":
            _award_profile(conn, score_id, rule, env)


def _award_events(conn: Connection, score_id: int, rules: Sequence[Any], env: SqlEnv) -> None:
    """Every event rule of one score in one pass over the events: the candidate events are
    copied once to a scratch table with one match flag per rule, then each rule awards its
    points from there (caps need the events of a rule in time order)."""
    if not rules:
        return
    specific: list[ColumnElement[bool]] = []
    types: set[str] = set()
    # The type and time columns are wrapped so that no index on them is used: for the whole
    # population one sequential pass beats index walks that visit most rows at random (and
    # SQLite would walk the type index once per rule), and for a few contacts the index on
    # contact_id is the one to use.
    kind = func.coalesce(events.c.type, "")
    until = func.coalesce(events.c.occurred_at, events.c.occurred_at)
    for rule in rules:
        condition = EventCondition.model_validate(rule.condition)
        types.add(condition.event)
        # the terms shared by every rule (scope, time, machine) come first; keep the rest
        terms = [kind == condition.event, *event_matches(condition, env)[3:]]
        if rule.min_dwell_seconds is not None:
            terms.append(events.c.dwell_ms >= rule.min_dwell_seconds * 1000)
        specific.append(and_(true(), *terms))
    scratch = Table(
        "score_events_scratch",
        MetaData(),
        Column("id", Id, primary_key=True),
        Column("contact_id", Id, nullable=False),
        Column("occurred_at", score_awards.c.awarded_at.type, nullable=False),
        Column("t", Float, nullable=False),
        *(Column(f"m{i}", Integer, nullable=False) for i in range(len(rules))),
        prefixes=["TEMPORARY"],
    )
    scratch.create(conn)
    candidates = select(
        events.c.id,
        events.c.contact_id,
        events.c.occurred_at,
        epoch(events.c.occurred_at, env.dialect),
        *(case((term, 1), else_=0) for term in specific),
    ).where(
        events.c.contact_id.in_(env.only)
        if env.only is not None
        else events.c.contact_id.is_not(None),
        kind.in_(sorted(types)),
        until <= env.now,
        events.c.machine.is_(false()),
        or_(*specific),
    )
    conn.execute(insert(scratch).from_select([c.name for c in scratch.columns], candidates))
    _analyze(conn, scratch)
    rule_ids = [r.id for r in rules]
    held = exists().where(
        score_awards.c.rule_id.in_(rule_ids), _in_scope(score_awards.c.contact_id, env)
    )
    if not conn.execute(select(held)).scalar():
        # nothing to compare with (the first build after a rule change, contacts never
        # scored by these rules): the awards go straight into the ledger
        for i, rule in enumerate(rules):
            picked = _award_rule(rule, scratch, scratch.c[f"m{i}"] == 1, env)
            conn.execute(
                insert(score_awards).from_select(
                    ["score_id", *_AWARD_COLUMNS], _with_score(picked, score_id)
                )
            )
        scratch.drop(conn)
        return
    fresh = Table(
        "score_awards_scratch",
        MetaData(),
        Column("rule_id", Id, primary_key=True),
        Column("event_id", Id, primary_key=True),
        Column("contact_id", Id, nullable=False),
        Column("awarded_at", score_awards.c.awarded_at.type, nullable=False),
        Column("points", Float, nullable=False),
        prefixes=["TEMPORARY"],
    )
    fresh.create(conn)
    for i, rule in enumerate(rules):
        picked = _award_rule(rule, scratch, scratch.c[f"m{i}"] == 1, env)
        conn.execute(insert(fresh).from_select(_AWARD_COLUMNS, picked))
    _analyze(conn, fresh)
    _merge_awards(conn, score_id, rule_ids, fresh, env)
    fresh.drop(conn)
    scratch.drop(conn)


def _merge_awards(
    conn: Connection, score_id: int, rule_ids: list[int], fresh: Table, env: SqlEnv
) -> None:
    """Make the ledger of these event rules equal ``fresh`` for the contacts in scope,
    writing only the differences: a recompute that changes nothing writes nothing, and
    awards keep their ids."""
    ledger = score_awards
    conn.execute(
        delete(ledger).where(
            ledger.c.rule_id.in_(rule_ids),
            _in_scope(ledger.c.contact_id, env),
            not_(
                exists().where(
                    fresh.c.rule_id == ledger.c.rule_id,
                    fresh.c.event_id == ledger.c.event_id,
                    fresh.c.contact_id == ledger.c.contact_id,
                    fresh.c.points == ledger.c.points,
                )
            ),
        )
    )
    missing = select(
        fresh.c.rule_id, literal(score_id), fresh.c.contact_id, fresh.c.event_id,
        fresh.c.awarded_at, fresh.c.points,
    ).where(
        not_(
            exists().where(
                ledger.c.rule_id == fresh.c.rule_id,
                ledger.c.contact_id == fresh.c.contact_id,
                ledger.c.event_id == fresh.c.event_id,
            )
        )
    )  # fmt: skip
    conn.execute(
        insert(ledger).from_select(
            ["rule_id", "score_id", "contact_id", "event_id", "awarded_at", "points"], missing
        )
    )


_AWARD_COLUMNS = ["rule_id", "contact_id", "event_id", "awarded_at", "points"]


def _with_score(picked: Select[Any], score_id: int) -> Select[Any]:
    """``picked`` (in ``_AWARD_COLUMNS`` order) with the score id in front."""
    inner = picked.subquery("picked")
    # in contact order: the ledger's contact index and the foreign-key lookups of the
    # contacts then advance through the pages in order instead of at random
    return select(literal(score_id), *inner.c).order_by(inner.c.contact_id, inner.c.id)


def _award_rule(rule: Any, scratch: Table, matched: Any, env: SqlEnv) -> Select[Any]:
    """The awards of one event rule (``_AWARD_COLUMNS``) from the candidate events."""
    if rule.cap_points is None:
        return select(
            literal(rule.id), scratch.c.contact_id, scratch.c.id, scratch.c.occurred_at,
            literal(rule.points, Float),
        ).where(matched)  # fmt: skip
    # the cap: at most cap_points (absolute) per contact per fixed period of cap_days days,
    # periods counted from 1970-01-01 in the configured time zone, events in time order
    offset = env.now.astimezone(env.zone).utcoffset()
    shift = offset.total_seconds() if offset is not None else 0.0
    period = func.floor((scratch.c.t + shift) / (rule.cap_days * DAY))
    ranked = (
        select(
            scratch.c.contact_id,
            scratch.c.id,
            scratch.c.occurred_at,
            func.row_number()
            .over(
                partition_by=[scratch.c.contact_id, period],
                order_by=[scratch.c.occurred_at, scratch.c.id],
            )
            .label("n"),
        )
        .where(matched)
        .subquery("ranked")
    )
    step = abs(rule.points)
    before = (ranked.c.n - 1) * step
    sign = 1.0 if rule.points > 0 else -1.0
    awarded = case((ranked.c.n * step <= rule.cap_points, step), else_=rule.cap_points - before)
    return select(
        literal(rule.id), ranked.c.contact_id, ranked.c.id, ranked.c.occurred_at,
        cast(awarded * sign, Float),
    ).where(before < rule.cap_points)  # fmt: skip


def _award_profile(conn: Connection, score_id: int, rule: Any, env: SqlEnv) -> None:
    matches = and_(
        contacts.c.merged_into_id.is_(None),
        compile_filter(parse_filter(rule.condition), env),
        _in_scope(contacts.c.id, env),
    )
    matching = select(contacts.c.id).where(matches)
    conn.execute(
        delete(score_awards).where(
            score_awards.c.rule_id == rule.id,
            _in_scope(score_awards.c.contact_id, env),
            score_awards.c.contact_id.not_in(matching),
        )
    )
    conn.execute(
        update(score_awards)
        .where(
            score_awards.c.rule_id == rule.id,
            _in_scope(score_awards.c.contact_id, env),
            score_awards.c.points != rule.points,
        )
        .values(points=rule.points)
    )
    already = exists().where(
        score_awards.c.rule_id == rule.id, score_awards.c.contact_id == contacts.c.id
    )
    picked = select(
        literal(rule.id), literal(score_id), contacts.c.id, literal(None, Id),
        literal(env.now, score_awards.c.awarded_at.type), literal(rule.points, Float),
    ).where(matches, not_(already))  # fmt: skip
    conn.execute(
        insert(score_awards).from_select(
            ["rule_id", "score_id", "contact_id", "event_id", "awarded_at", "points"], picked
        )
    )


def _bounded(total: Any, definition: Any) -> Any:
    if definition.max_points is not None:
        total = case((total > definition.max_points, definition.max_points), else_=total)
    if definition.min_points is not None:
        total = case((total < definition.min_points, definition.min_points), else_=total)
    return total


def _mark_changed(conn: Connection, key: str, env: SqlEnv, gone_rows: Any, *, sweep: bool) -> None:
    """Queue the contacts whose value is about to change for the segment refresh (filters
    may name score.<key>); the worker's own step needs none, its contacts are queued.

    Decay alone (``sweep``) queues a contact only when its value crosses a whole number:
    otherwise every contact with decaying points would be refreshed on every sweep.
    """
    old = contact_scores
    if sweep:
        same = func.round(_values.c.value) == func.round(old.c.value)
    else:
        same = func.abs(_values.c.value - old.c.value) <= EPSILON
    differs = select(_values.c.contact_id).where(
        not_(exists().where(old.c.contact_id == _values.c.contact_id, old.c.score_key == key, same))
    )
    for changed in (differs, select(old.c.contact_id).where(gone_rows)):
        ids = changed.subquery("changed")
        fresh = select(ids.c.contact_id, literal(env.now, dirty_contacts.c.marked_at.type)).where(
            not_(exists().where(dirty_contacts.c.contact_id == ids.c.contact_id))
        )
        statement = (postgresql.insert if env.dialect == "postgresql" else sqlite.insert)(
            dirty_contacts
        )
        conn.execute(
            statement.from_select(["contact_id", "marked_at"], fresh).on_conflict_do_nothing()
        )


def _write_values(
    conn: Connection, definition: Any, env: SqlEnv, *, sweep: bool, mark_changed: bool
) -> int:
    key = definition.key
    conn.execute(delete(_values))
    total = func.sum(worth_now(env.now, env.dialect))
    computed = (
        select(score_awards.c.contact_id, cast(_bounded(total, definition), Float))
        .join(score_rules, score_rules.c.id == score_awards.c.rule_id)
        .where(score_awards.c.score_id == definition.id, _in_scope(score_awards.c.contact_id, env))
        .group_by(score_awards.c.contact_id)
    )
    conn.execute(insert(_values).from_select(["contact_id", "value"], computed))
    _analyze(conn, _values)
    # a contact whose points are all gone (expired, decayed away) has no value, like one
    # who never had any
    conn.execute(delete(_values).where(func.abs(_values.c.value) <= EPSILON))
    old = contact_scores
    same_key = and_(old.c.contact_id == _values.c.contact_id, old.c.score_key == key)
    if sweep:
        noted = func.round(_values.c.value) != func.round(old.c.value)
    else:
        noted = func.abs(_values.c.value - old.c.value) >= HISTORY_STEP
    appeared = select(
        _values.c.contact_id, literal(key), _values.c.value,
        func.coalesce(old.c.value, 0.0), literal(env.now, score_history.c.changed_at.type),
    ).select_from(_values.outerjoin(old, same_key)).where(
        or_(and_(old.c.contact_id.is_(None), func.abs(_values.c.value) >= HISTORY_STEP), noted)
    )  # fmt: skip
    gone_rows = and_(
        old.c.score_key == key,
        _in_scope(old.c.contact_id, env),
        # NOT EXISTS, not NOT IN: an anti-join on the scratch table's key on both databases
        not_(exists().where(_values.c.contact_id == old.c.contact_id)),
    )
    vanished = select(
        old.c.contact_id, literal(key), literal(0.0, Float), old.c.value,
        literal(env.now, score_history.c.changed_at.type),
    ).where(gone_rows, func.abs(old.c.value) >= HISTORY_STEP)  # fmt: skip
    history_columns = ["contact_id", "score_key", "value", "previous", "changed_at"]
    conn.execute(insert(score_history).from_select(history_columns, appeared))
    conn.execute(insert(score_history).from_select(history_columns, vanished))
    changed = exists().where(
        _values.c.contact_id == old.c.contact_id,
        func.abs(_values.c.value - old.c.value) > EPSILON,
    )
    if mark_changed:
        _mark_changed(conn, key, env, gone_rows, sweep=sweep)
    removed = conn.execute(
        delete(old).where(
            old.c.score_key == key,
            _in_scope(old.c.contact_id, env),
            or_(not_(exists().where(_values.c.contact_id == old.c.contact_id)), changed),
        )
    ).rowcount
    fresh = select(
        _values.c.contact_id, literal(key), _values.c.value,
        literal(env.now, contact_scores.c.updated_at.type),
    ).where(
        not_(exists().where(old.c.contact_id == _values.c.contact_id, old.c.score_key == key))
    )  # fmt: skip
    added = conn.execute(
        insert(old).from_select(["contact_id", "score_key", "value", "updated_at"], fresh)
    ).rowcount
    return max(int(removed or 0), int(added or 0))
