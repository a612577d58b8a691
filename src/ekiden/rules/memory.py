"""The in-memory evaluator: does one contact, as loaded, match a filter right now?

Same meaning as ``sql.compile_filter``; the property tests in tests/test_rules_agree.py hold
the two to it. Rules of meaning, all shared with the SQL compiler:
- a comparison on an unset value is false, and ne / not_in / not_contains are the negation
  of eq / in / contains (so they hold for unset values);
- text comparisons fold ASCII case only (``fold``); gt / lt compare code points;
- event properties match only values of the same JSON type as the filter's value;
- events flagged as machine activity count only with ``include_machine``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ekiden.rules.bind import COLUMN_PROPERTIES, field_operand, fold
from ekiden.rules.fields import Catalog, FieldRef
from ekiden.rules.model import (
    All,
    AnyOf,
    Comparison,
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


@dataclass
class EventData:
    type: str
    occurred_at: datetime
    path: str | None = None
    name: str | None = None
    dwell_ms: int | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    machine: bool = False


@dataclass
class ContactData:
    """Everything a filter may look at for one contact."""

    fields: dict[str, Any]
    custom: dict[str, Any] = field(default_factory=dict)
    account: dict[str, Any] | None = None
    tags: set[str] = field(default_factory=set)
    events: list[EventData] = field(default_factory=list)
    segments: set[str] = field(default_factory=set)  # slugs of segments the contact is in
    lists: set[str] = field(default_factory=set)  # slugs of lists the contact is on
    scores: dict[str, float] = field(default_factory=dict)  # score key -> value


@dataclass(frozen=True)
class Env:
    catalog: Catalog
    now: datetime
    zone: ZoneInfo


def evaluate(flt: Filter, contact: ContactData, env: Env) -> bool:
    if isinstance(flt, All):
        return all(evaluate(sub, contact, env) for sub in flt.all)
    if isinstance(flt, AnyOf):
        return any(evaluate(sub, contact, env) for sub in flt.any)
    if isinstance(flt, Not):
        return not evaluate(flt.not_, contact, env)
    if isinstance(flt, TagCondition):
        return flt.tag in contact.tags
    if isinstance(flt, SegmentCondition):
        return flt.segment in contact.segments
    if isinstance(flt, ListCondition):
        return flt.list in contact.lists
    if isinstance(flt, FieldCondition):
        return _field(flt, contact, env)
    if isinstance(flt, EventCondition):
        return _event(flt, contact, env)
    if isinstance(flt, EmailEngagementCondition):
        return _engagement(flt, contact, env)
    raise TypeError(f"unknown filter node {type(flt).__name__}")  # pragma: no cover


def _field_value(ref: FieldRef, contact: ContactData) -> Any:
    if ref.kind == "standard":
        if ref.name == "unsubscribed":
            return contact.fields.get("unsubscribed_at") is not None
        if ref.name == "suppressed":
            return contact.fields.get("suppressed_at") is not None
        return contact.fields.get(ref.name)
    if ref.kind == "score":
        return contact.scores.get(ref.name, 0.0)  # no points: 0, as in SQL
    if ref.kind == "account":
        return None if contact.account is None else contact.account.get(ref.name)
    value = contact.custom.get(ref.name)
    # custom values are JSON: only a value of the field's type counts as set
    if ref.type == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return None
    if ref.type == "boolean" and not isinstance(value, bool):
        return None
    if ref.type in ("text", "date") and not isinstance(value, str):
        return None
    if ref.type == "datetime":
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return value


def _field(cond: FieldCondition, contact: ContactData, env: Env) -> bool:
    ref = env.catalog.resolve(cond.field)
    if ref is None:
        raise ValueError(f"unknown field {cond.field}")
    value = _field_value(ref, contact)
    operand = field_operand(ref, cond, env.zone)
    if cond.op in ("within_last_days", "more_than_days_ago"):
        if value is None:
            return False
        cutoff = env.now - timedelta(days=operand)
        if ref.type == "date":
            limit = cutoff.astimezone(env.zone).date().isoformat()
            return bool(value >= limit if cond.op == "within_last_days" else value < limit)
        return bool(value >= cutoff if cond.op == "within_last_days" else value < cutoff)
    return compare(cond.op, value, operand, text=ref.type == "text")


def compare(op: str, value: Any, operand: Any, *, text: bool) -> bool:
    """Apply ``op``; unset values fail every positive operator."""
    negated = {"ne": "eq", "not_in": "in", "not_contains": "contains"}
    if op in negated:
        return not compare(negated[op], value, operand, text=text)
    if op == "is_set":
        return value is not None and value != ""
    if op == "is_empty":
        return value is None or value == ""
    if value is None:
        return False
    if text and op in ("eq", "in", "contains", "starts_with", "ends_with"):
        value = fold(value)
        operand = [fold(v) for v in operand] if isinstance(operand, list) else fold(operand)
    if op == "eq":
        return bool(value == operand)
    if op == "in":
        return value in operand
    if op == "contains":
        return operand in value
    if op == "starts_with":
        return bool(value.startswith(operand))
    if op == "ends_with":
        return bool(value.endswith(operand))
    if op == "between":
        return bool(operand[0] <= value <= operand[1])
    return bool(
        {"gt": value > operand, "gte": value >= operand, "lt": value < operand,
         "lte": value <= operand}[op]
    )  # fmt: skip


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _property(event: EventData, cond: PropertyCondition) -> bool:
    if cond.property in COLUMN_PROPERTIES:
        value: Any = getattr(event, COLUMN_PROPERTIES[cond.property])
    else:
        value = event.properties
        for key in cond.property.split("."):
            value = value.get(key) if isinstance(value, dict) else None
    operand = cond.value
    if cond.op in ("is_set", "is_empty"):
        present = value is not None and value != ""
        return present if cond.op == "is_set" else not present
    # a value of another JSON type than the filter's never matches (so ne etc. hold)
    sample = operand[0] if isinstance(operand, list) else operand
    if value is not None and _json_kind(value) != _json_kind(sample):
        value = None
    return compare(cond.op, value, operand, text=isinstance(sample, str))


def _window_start(cond: EventCondition | EmailEngagementCondition, env: Env) -> datetime | None:
    if cond.within_days is not None:
        return env.now - timedelta(days=cond.within_days)
    since = getattr(cond, "since", None)
    if isinstance(since, datetime):
        return since
    if isinstance(since, date):
        return datetime.combine(since, datetime.min.time(), env.zone)
    return None


def _event(cond: EventCondition, contact: ContactData, env: Env) -> bool:
    start = _window_start(cond, env)
    total: float = 0
    for event in contact.events:
        if event.type != cond.event or (event.machine and not cond.include_machine):
            continue
        if event.occurred_at > env.now or (start is not None and event.occurred_at < start):
            continue
        if all(_property(event, w) for w in cond.where):
            total += (event.dwell_ms or 0) if cond.sum else 1
    if total < cond.lower:
        return False
    return cond.max is None or total <= cond.max


def engagement_metric(
    cond: EmailEngagementCondition, contact: ContactData, env: Env
) -> float | None:
    """The metric over human activity on emails delivered in the window, or None when the
    contact has fewer deliveries than ``min_delivered`` (or no opens, for the median)."""
    start = _window_start(cond, env)
    delivered: dict[str, datetime] = {}
    first_open: dict[str, datetime] = {}
    clicked: set[str] = set()
    for event in contact.events:
        send = event.properties.get("send_id")
        if not isinstance(send, str) or event.occurred_at > env.now:
            continue
        if event.type == "email_delivered":
            in_window = start is None or event.occurred_at >= start
            if in_window and (send not in delivered or event.occurred_at < delivered[send]):
                delivered[send] = event.occurred_at
        elif event.machine:
            continue
        elif event.type == "email_opened":
            if send not in first_open or event.occurred_at < first_open[send]:
                first_open[send] = event.occurred_at
        elif event.type == "email_clicked":
            clicked.add(send)
    if len(delivered) < cond.min_delivered:
        return None
    if cond.email == "open_rate":
        return sum(1 for s in delivered if s in first_open) / len(delivered)
    if cond.email == "click_rate":
        return sum(1 for s in delivered if s in clicked) / len(delivered)
    # whole seconds on both sides, as the SQL compiler counts them
    delays = [
        int(first_open[s].timestamp()) - int(at.timestamp())
        for s, at in delivered.items()
        if s in first_open
    ]
    return statistics.median(delays) / 60 if delays else None


def _engagement(cond: EmailEngagementCondition, contact: ContactData, env: Env) -> bool:
    metric = engagement_metric(cond, contact, env)
    if metric is None:
        return False
    if cond.email == "median_minutes_to_open":  # compare in seconds, exactly as SQL does
        return compare(cond.op, metric * 60, cond.value * 60, text=False)
    return compare(cond.op, metric, cond.value, text=False)


__all__ = ["ContactData", "Env", "EventData", "compare", "evaluate"]
_ = Comparison  # re-exported type used in signatures elsewhere
