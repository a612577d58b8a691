"""Check a parsed filter against the field catalogue and turn its values into operands.

Shared by both evaluators so that they read values the same way. Every problem raises
Invalid naming the part of the filter by path (``all[2].value``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from ekiden.errors import Invalid
from ekiden.rules.fields import Catalog, FieldRef, FieldType
from ekiden.rules.model import (
    All,
    AnyOf,
    Comparison,
    EventCondition,
    FieldCondition,
    Filter,
    ListCondition,
    Not,
    PropertyCondition,
    SegmentCondition,
)

PROPERTY_KEY = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
# Properties stored as event columns rather than inside the JSON document.
COLUMN_PROPERTIES = {"path": "path", "name": "name"}

_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(text: str) -> str:
    """ASCII-only lower-casing: the case rule both evaluators share (SQLite's lower())."""
    return text.translate(_ASCII_FOLD)


def walk(flt: Filter, path: str = "") -> Iterator[tuple[str, Filter]]:
    """Every node of the filter with its path."""
    yield path or "(root)", flt
    if isinstance(flt, All | AnyOf):
        key = "all" if isinstance(flt, All) else "any"
        items = flt.all if isinstance(flt, All) else flt.any
        for i, sub in enumerate(items):
            yield from walk(sub, f"{path}{key}[{i}]" if not path else f"{path}.{key}[{i}]")
    elif isinstance(flt, Not):
        yield from walk(flt.not_, f"{path}.not" if path else "not")


def segments_named(flt: Filter) -> set[str]:
    """Slugs of the segments ``flt`` refers to (for dependency order and cycle checks)."""
    return {node.segment for _, node in walk(flt) if isinstance(node, SegmentCondition)}


def event_types_of(flt: Filter) -> set[str]:
    """Event types ``flt`` looks at (to load only those for the in-memory evaluator)."""
    from ekiden.rules.model import EmailEngagementCondition

    found: set[str] = set()
    for _, node in walk(flt):
        if isinstance(node, EventCondition):
            found.add(node.event)
        elif isinstance(node, EmailEngagementCondition):
            found |= {"email_delivered", "email_opened", "email_clicked"}
    return found


def is_time_dependent(flt: Filter) -> bool:
    """True when membership can change with the passage of time alone."""
    from ekiden.rules.model import EmailEngagementCondition

    for _, node in walk(flt):
        if isinstance(node, FieldCondition) and node.op in (
            "within_last_days",
            "more_than_days_ago",
        ):
            return True
        if isinstance(node, EventCondition | EmailEngagementCondition) and node.within_days:
            return True
    return False


def check(flt: Filter, catalog: Catalog, zone: ZoneInfo) -> None:
    """Raise Invalid if any field is unknown or any value does not fit its field's type."""
    for path, node in walk(flt):
        if isinstance(node, FieldCondition):
            ref = catalog.resolve(node.field)
            if ref is None:
                raise Invalid(f"{path}.field: unknown field {node.field!r}", code="unknown_field")
            try:
                field_operand(ref, node, zone)
            except ValueError as exc:
                raise Invalid(f"{path}.value: {exc}", code="invalid_filter") from None
        elif isinstance(node, SegmentCondition) and node.segment not in catalog.segments:
            raise Invalid(f"{path}.segment: no segment {node.segment!r}", code="unknown_segment")
        elif isinstance(node, ListCondition) and node.list not in catalog.lists:
            raise Invalid(f"{path}.list: no list {node.list!r}", code="unknown_list")
        elif isinstance(node, EventCondition):
            for i, cond in enumerate(node.where):
                if not PROPERTY_KEY.match(cond.property):
                    raise Invalid(
                        f"{path}.where[{i}].property: use letters, digits, _ and - "
                        "with . between nested keys",
                        code="invalid_filter",
                    )
                if cond.op in ("within_last_days", "more_than_days_ago"):
                    raise Invalid(
                        f"{path}.where[{i}].op: {cond.op} applies to date fields, not to "
                        "event properties (use within_days on the event)",
                        code="invalid_filter",
                    )


def _as_datetime(value: Any, zone: ZoneInfo) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be a date (2026-04-01) or date-time with offset")
    try:
        if len(value) == 10:
            # a plain date means its midnight in the configured time zone
            return datetime.combine(date.fromisoformat(value), time(), zone).astimezone(UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid date or date-time") from None
    if moment.tzinfo is None:
        raise ValueError("a date-time needs a time zone offset, e.g. +09:00")
    return moment.astimezone(UTC)


def _scalar(type_: FieldType, value: Any, zone: ZoneInfo) -> Any:
    if type_ == "text":
        if not isinstance(value, str):
            raise ValueError("must be text")
        return value
    if type_ == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        return value
    if type_ == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if type_ == "date":
        if not isinstance(value, str):
            raise ValueError("must be a date such as 2026-04-01")
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError(f"{value!r} is not a valid date") from None
    return _as_datetime(value, zone)


def field_operand(ref: FieldRef, cond: Comparison, zone: ZoneInfo) -> Any:
    """The comparison's value converted for ``ref``; ValueError says why it does not fit."""
    op, value = cond.op, cond.value
    if op in ("is_set", "is_empty"):
        return None
    if op in ("within_last_days", "more_than_days_ago"):
        if ref.type not in ("datetime", "date"):
            raise ValueError(f"{op} applies to date fields; {ref.name} is {ref.type}")
        return float(value)  # type: ignore[arg-type]
    if op in ("contains", "not_contains", "starts_with", "ends_with"):
        if ref.type != "text":
            raise ValueError(f"{op} applies to text fields; {ref.name} is {ref.type}")
        return value
    if op in ("gt", "gte", "lt", "lte", "between") and ref.type == "boolean":
        raise ValueError(f"{op} does not apply to a true/false field")
    if isinstance(value, list):
        return [_operand(ref, v, zone) for v in value]
    return _operand(ref, value, zone)


def _operand(ref: FieldRef, value: Any, zone: ZoneInfo) -> Any:
    result = _scalar(ref.type, value, zone)
    if ref.kind == "custom" and isinstance(result, datetime):
        # custom date-times are stored to the second (CUSTOM_DATETIME_FORMAT)
        result = result.replace(microsecond=0)
    return result


def property_operand(cond: PropertyCondition) -> Any:
    """Event properties are untyped: the value's own JSON type decides what it matches."""
    return cond.value
