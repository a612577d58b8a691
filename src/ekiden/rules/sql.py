"""The SQL compiler: a filter becomes one SQLAlchemy boolean expression over ``contacts``.

Same meaning as ``memory.evaluate`` (see its docstring for the shared rules). Only SQLAlchemy
expressions are emitted; values always travel as bound parameters. Every compiled condition
is TRUE or FALSE, never NULL, so ``not`` is plain negation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
)

from ekiden.contacts.customfields import CUSTOM_DATETIME_FORMAT
from ekiden.contacts.tables import accounts, contact_tags, contacts
from ekiden.rules.bind import COLUMN_PROPERTIES, field_operand, fold
from ekiden.rules.fields import Catalog, FieldRef
from ekiden.rules.memory import _json_kind
from ekiden.rules.model import (
    All,
    AnyOf,
    EmailEngagementCondition,
    EventCondition,
    FieldCondition,
    Filter,
    ListCondition,
    Not,
    PropertyCondition,
    SegmentCondition,
    TagCondition,
)
from ekiden.scoring.tables import contact_scores
from ekiden.segments.tables import list_members, segment_members
from ekiden.tracking.tables import events

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_LETTERS = frozenset(_UPPER + _LOWER)


@dataclass(frozen=True)
class SqlEnv:
    catalog: Catalog
    now: datetime
    zone: ZoneInfo
    dialect: str  # "sqlite" | "postgresql"
    # evaluating for these contacts only (incremental refresh): behaviour subqueries then
    # read just their events through the (contact_id, occurred_at) index
    only: tuple[int, ...] | None = None


_BEHAVIOUR = (EventCondition, EmailEngagementCondition)


def compile_filter(flt: Filter, env: SqlEnv) -> ColumnElement[bool]:
    """A WHERE clause over ``contacts`` selecting the contacts that match ``flt``."""
    if isinstance(flt, All):
        # AND is commutative: cheap conditions on the contact row go first, and when there
        # are any, event counts are correlated per remaining contact (index on contact_id)
        # instead of grouping every matching event of the population.
        plain = [sub for sub in flt.all if not isinstance(sub, _BEHAVIOUR)]
        behaviour = [sub for sub in flt.all if isinstance(sub, EventCondition)]
        other = [sub for sub in flt.all if isinstance(sub, EmailEngagementCondition)]
        terms = [compile_filter(sub, env) for sub in plain]
        terms += [
            _event(sub, env, correlated=bool(plain) and _per_contact(sub, env)) for sub in behaviour
        ]
        terms += [compile_filter(sub, env) for sub in other]
        return and_(true(), *terms)
    if isinstance(flt, AnyOf):
        return or_(false(), *(compile_filter(sub, env) for sub in flt.any))
    if isinstance(flt, Not):
        return not_(compile_filter(flt.not_, env))
    if isinstance(flt, TagCondition):
        return exists().where(
            contact_tags.c.contact_id == contacts.c.id, contact_tags.c.tag == flt.tag
        )
    if isinstance(flt, SegmentCondition):
        return exists().where(
            segment_members.c.contact_id == contacts.c.id,
            segment_members.c.segment_id == env.catalog.segments[flt.segment],
        )
    if isinstance(flt, ListCondition):
        return exists().where(
            list_members.c.contact_id == contacts.c.id,
            list_members.c.list_id == env.catalog.lists[flt.list],
        )
    if isinstance(flt, FieldCondition):
        return _field(flt, env)
    if isinstance(flt, EventCondition):
        return _event(flt, env)
    if isinstance(flt, EmailEngagementCondition):
        return _engagement(flt, env)
    raise TypeError(f"unknown filter node {type(flt).__name__}")  # pragma: no cover


# --- values ----------------------------------------------------------------------------


def _fold(expr: Any, env: SqlEnv) -> Any:
    if env.dialect == "postgresql":
        # lower() under the "C" collation folds A-Z only, like ``fold`` (and is several
        # times faster than translate())
        return func.lower(expr.collate("C"))
    return func.lower(expr)  # SQLite's lower() folds ASCII only, like ``fold``


def _json_typed(doc: Any, keys: list[str], kind: str, env: SqlEnv) -> Any:
    """The JSON value at ``keys`` when it is of ``kind`` (string | number | boolean), else
    NULL: booleans as 1 / 0, numbers as numbers, strings as text."""
    if env.dialect == "postgresql":
        node = func.jsonb_extract_path(doc, *keys)
        as_text = func.jsonb_extract_path_text(doc, *keys)
        typeof = func.jsonb_typeof(node)
        if kind == "string":
            return case((typeof == "string", as_text), else_=null())
        if kind == "number":
            return case((typeof == "number", cast(as_text, Float)), else_=null())
        return case((typeof == "boolean", case((as_text == "true", 1), else_=0)), else_=null())
    path = "$" + "".join(f'."{k}"' for k in keys)
    typeof = func.json_type(doc, path)
    value = func.json_extract(doc, path)
    wanted = {"string": ("text",), "number": ("integer", "real"), "boolean": ("true", "false")}
    return case((typeof.in_(wanted[kind]), value), else_=null())


def _field_expr(ref: FieldRef, env: SqlEnv) -> Any:
    if ref.kind == "standard":
        if ref.name == "unsubscribed":
            return case((contacts.c.unsubscribed_at.is_not(None), 1), else_=0)
        if ref.name == "suppressed":
            return case((contacts.c.suppressed_at.is_not(None), 1), else_=0)
        return contacts.c[ref.name]
    if ref.kind == "score":
        # a contact without points in a score has 0 in it
        return func.coalesce(
            select(contact_scores.c.value)
            .where(
                contact_scores.c.contact_id == contacts.c.id,
                contact_scores.c.score_key == ref.name,
            )
            .scalar_subquery(),
            0.0,
        )
    if ref.kind == "account":
        return (
            select(accounts.c[ref.name])
            .where(accounts.c.id == contacts.c.account_id)
            .scalar_subquery()
        )
    kind = {"number": "number", "boolean": "boolean"}.get(ref.type, "string")
    return _json_typed(contacts.c.custom, [ref.name], kind, env)


def _sql_operand(ref: FieldRef, operand: Any) -> Any:
    if ref.kind == "custom" and isinstance(operand, datetime):
        return operand.strftime(CUSTOM_DATETIME_FORMAT)
    if isinstance(operand, bool):
        return int(operand)
    return operand


def _compare(op: str, expr: Any, operand: Any, env: SqlEnv, *, text: bool) -> ColumnElement[bool]:
    negated = {"ne": "eq", "not_in": "in", "not_contains": "contains"}
    if op in negated:
        return not_(_compare(negated[op], expr, operand, env, text=text))
    if op == "is_set":
        return and_(expr.is_not(None), expr != "") if text else expr.is_not(None)
    if op == "is_empty":
        return not_(_compare("is_set", expr, operand, env, text=text))
    raw = expr
    folding = False
    if text and op in ("eq", "in", "contains", "starts_with", "ends_with"):
        values = operand if isinstance(operand, list) else [operand]
        # Folding the column only matters when the value has Latin letters: a value without
        # them matches a folded text exactly where it matches the text itself ("部長"), and
        # the plain column is cheaper and can use an index.
        if any(_LETTERS.intersection(v) for v in values):
            folding = True
            operand = [fold(v) for v in operand] if isinstance(operand, list) else fold(operand)
    elif text and env.dialect == "postgresql":
        expr = expr.collate("C")  # code-point order, as Python compares strings
    if folding and env.dialect == "sqlite" and op in ("contains", "starts_with", "ends_with"):
        # SQLite's LIKE ignores the case of A-Z only, exactly like ``fold`` (the application
        # never sets PRAGMA case_sensitive_like), and costs what a plain comparison costs
        escaped = operand.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = {"contains": f"%{escaped}%", "starts_with": f"{escaped}%"}.get(op, f"%{escaped}")
        return and_(raw.is_not(None), expr.like(pattern, escape="\\"))
    if op in ("starts_with", "ends_with"):
        # ASCII folding maps character to character, so folding the head (tail) of the text
        # is folding the text and taking its head (tail): only len(value) characters folded
        if op == "starts_with":
            part = func.substr(expr, 1, len(operand))
        elif env.dialect == "postgresql":
            part = func.right(expr, len(operand))
        else:
            part = func.substr(expr, -len(operand))
        cmp = (_fold(part, env) if folding else part) == operand
        return and_(raw.is_not(None), cmp)
    if folding:
        expr = _fold(expr, env)
    if op == "eq":
        cmp = expr == operand
    elif op == "in":
        cmp = expr.in_(operand)
    elif op == "contains":
        position = func.strpos if env.dialect == "postgresql" else func.instr
        cmp = position(expr, operand) > 0
    elif op == "between":
        cmp = and_(expr >= operand[0], expr <= operand[1])
    else:
        cmp = {"gt": expr > operand, "gte": expr >= operand, "lt": expr < operand,
               "lte": expr <= operand}[op]  # fmt: skip
    # positive comparisons are false (not NULL) on unset values
    return and_(raw.is_not(None), cmp)


def _field(cond: FieldCondition, env: SqlEnv) -> ColumnElement[bool]:
    ref = env.catalog.resolve(cond.field)
    if ref is None:
        raise ValueError(f"unknown field {cond.field}")
    expr = _field_expr(ref, env)
    operand = field_operand(ref, cond, env.zone)
    if cond.op in ("within_last_days", "more_than_days_ago"):
        cutoff: Any = env.now - timedelta(days=operand)
        if ref.type == "date":
            cutoff = cutoff.astimezone(env.zone).date().isoformat()
        elif ref.kind == "custom":
            cutoff = cutoff.strftime(CUSTOM_DATETIME_FORMAT)
        cmp = expr >= cutoff if cond.op == "within_last_days" else expr < cutoff
        return and_(expr.is_not(None), cmp)
    if isinstance(operand, list):
        operand = [_sql_operand(ref, v) for v in operand]
    else:
        operand = _sql_operand(ref, operand)
    return _compare(cond.op, expr, operand, env, text=ref.type == "text")


# --- behaviour -----------------------------------------------------------------------------


def _property(cond: PropertyCondition, env: SqlEnv) -> ColumnElement[bool]:
    operand = cond.value
    sample = operand[0] if isinstance(operand, list) else operand
    kind = _json_kind(sample) if sample is not None else "string"
    if cond.property in COLUMN_PROPERTIES:
        column = events.c[COLUMN_PROPERTIES[cond.property]]
        expr: Any = column if kind == "string" or cond.op in ("is_set", "is_empty") else null()
    elif cond.op in ("is_set", "is_empty"):
        # present = a string that is not empty, or any number / boolean
        keys = cond.property.split(".")
        as_text = _json_typed(events.c.properties, keys, "string", env)
        present = or_(
            and_(as_text.is_not(None), as_text != ""),
            _json_typed(events.c.properties, keys, "number", env).is_not(None),
            _json_typed(events.c.properties, keys, "boolean", env).is_not(None),
        )
        return present if cond.op == "is_set" else not_(present)
    else:
        expr = _json_typed(events.c.properties, cond.property.split("."), kind, env)
    if isinstance(operand, list):
        operand = [int(v) if isinstance(v, bool) else v for v in operand]
    elif isinstance(operand, bool):
        operand = int(operand)
    return _compare(cond.op, expr, operand, env, text=kind == "string")


def _window_start(cond: EventCondition | EmailEngagementCondition, env: SqlEnv) -> Any:
    if cond.within_days is not None:
        return env.now - timedelta(days=cond.within_days)
    since = getattr(cond, "since", None)
    if isinstance(since, datetime):
        return since
    if since is not None:
        return datetime.combine(since, datetime.min.time(), env.zone)
    return None


def event_matches(cond: EventCondition, env: SqlEnv) -> list[ColumnElement[bool]]:
    """The WHERE terms selecting the events ``cond`` counts (any contact)."""
    terms: list[ColumnElement[bool]] = [
        events.c.contact_id.is_not(None) if env.only is None else events.c.contact_id.in_(env.only),
        events.c.type == cond.event,
        events.c.occurred_at <= env.now,
    ]
    start = _window_start(cond, env)
    if start is not None:
        terms.append(events.c.occurred_at >= start)
    if not cond.include_machine:
        terms.append(events.c.machine.is_(false()))
    terms.extend(_property(w, env) for w in cond.where)
    return terms


def _event(cond: EventCondition, env: SqlEnv, *, correlated: bool = False) -> ColumnElement[bool]:
    measure = func.sum(func.coalesce(events.c.dwell_ms, 0)) if cond.sum else func.count(events.c.id)
    if correlated:
        total = func.coalesce(
            select(measure)
            .where(events.c.contact_id == contacts.c.id, *event_matches(cond, env)[1:])
            .scalar_subquery(),
            0,
        )
        bounds = [total >= _number(cond.lower)] if cond.lower > 0 else []
        if cond.max is not None:
            bounds.append(total <= _number(cond.max))
        return and_(true(), *bounds)
    base = (
        select(events.c.contact_id).where(*event_matches(cond, env)).group_by(events.c.contact_id)
    )
    if cond.lower > 0:
        having = [measure >= _number(cond.lower)]
        if cond.max is not None:
            having.append(measure <= _number(cond.max))
        return contacts.c.id.in_(base.having(and_(*having)))
    if cond.max is None:
        return true()
    return not_(contacts.c.id.in_(base.having(measure > _number(cond.max))))


def _per_contact(cond: EventCondition, env: SqlEnv) -> bool:
    """Whether to count ``cond`` per remaining contact (correlated) rather than grouping the
    matching events of everyone. On SQLite a whole-population refresh of a windowed "at least
    N" condition groups instead: the reports' covering index on events (type, occurred_at,
    machine, contact_id, path) answers it without reading a row, where a count per contact
    reads every event row of each contact's window."""
    whole_population = env.only is None
    windowed = cond.within_days is not None or cond.since is not None
    grouped = env.dialect == "sqlite" and whole_population and windowed and cond.lower > 0
    return not grouped


def _number(bound: float) -> int | float:
    """Whole bounds as integers: compared with an integer count they need no cast."""
    return int(bound) if float(bound).is_integer() else bound


def _epoch(expr: Any, env: SqlEnv) -> Any:
    if env.dialect == "postgresql":
        return func.floor(func.extract("epoch", expr))
    return cast(func.strftime("%s", expr), Integer)


def _engagement(cond: EmailEngagementCondition, env: SqlEnv) -> ColumnElement[bool]:
    send_id = _json_typed(events.c.properties, ["send_id"], "string", env)
    delivered_terms = [
        events.c.contact_id.is_not(None) if env.only is None else events.c.contact_id.in_(env.only),
        events.c.type == "email_delivered",
        send_id.is_not(None),
        events.c.occurred_at <= env.now,
    ]
    start = _window_start(cond, env)
    if start is not None:
        delivered_terms.append(events.c.occurred_at >= start)
    delivered = (
        select(
            events.c.contact_id,
            send_id.label("send_id"),
            func.min(events.c.occurred_at).label("at"),
        )
        .where(*delivered_terms)
        .group_by(events.c.contact_id, send_id)
        .subquery("delivered")
    )

    def first(kind: str, name: str) -> Any:
        return (
            select(
                events.c.contact_id,
                send_id.label("send_id"),
                func.min(events.c.occurred_at).label("at"),
            )
            .where(
                events.c.contact_id.is_not(None),
                events.c.type == kind,
                send_id.is_not(None),
                events.c.occurred_at <= env.now,
                events.c.machine.is_(false()),
            )
            .group_by(events.c.contact_id, send_id)
            .subquery(name)
        )

    if cond.email in ("open_rate", "click_rate"):
        acted = first("email_opened" if cond.email == "open_rate" else "email_clicked", "acted")
        joined = delivered.outerjoin(
            acted,
            and_(
                acted.c.contact_id == delivered.c.contact_id, acted.c.send_id == delivered.c.send_id
            ),
        )
        rate = cast(func.count(acted.c.send_id), Float) / func.count()
        per_contact = (
            select(delivered.c.contact_id)
            .select_from(joined)
            .group_by(delivered.c.contact_id)
            .having(and_(func.count() >= cond.min_delivered, _op(cond.op, rate, cond.value)))
        )
        return contacts.c.id.in_(per_contact)

    opened = first("email_opened", "opened")
    counts = (
        select(delivered.c.contact_id, func.count().label("n"))
        .group_by(delivered.c.contact_id)
        .subquery("counts")
    )
    delay = (_epoch(opened.c.at, env) - _epoch(delivered.c.at, env)).label("delay")
    ranked = (
        select(
            delivered.c.contact_id,
            delay,
            func.row_number().over(partition_by=delivered.c.contact_id, order_by=delay).label("rn"),
            func.count().over(partition_by=delivered.c.contact_id).label("cnt"),
        )
        .select_from(
            delivered.join(
                opened,
                and_(
                    opened.c.contact_id == delivered.c.contact_id,
                    opened.c.send_id == delivered.c.send_id,
                ),
            )
        )
        .subquery("ranked")
    )
    middle = or_(ranked.c.rn == (ranked.c.cnt + 1) / 2, ranked.c.rn == (ranked.c.cnt + 2) / 2)
    median = (
        select(ranked.c.contact_id, func.avg(ranked.c.delay).label("median"))
        .where(middle)
        .group_by(ranked.c.contact_id)
        .subquery("median")
    )
    per_contact = (
        select(median.c.contact_id)
        .join(counts, counts.c.contact_id == median.c.contact_id)
        .where(
            counts.c.n >= cond.min_delivered,
            _op(cond.op, median.c.median, literal(cond.value * 60)),
        )
    )
    return contacts.c.id.in_(per_contact)


def _op(op: str, left: Any, right: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool] = {
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
    }[op]
    return result
