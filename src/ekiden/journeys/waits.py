"""When a wait ends: durations, dates from contact fields, weekday / time windows in the
contact's own time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ekiden.journeys.definition import WaitUntil

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def contact_zone(fields: dict[str, Any], default: ZoneInfo) -> ZoneInfo:
    """The contact's time zone, or ``default`` when unset or unknown."""
    name = fields.get("time_zone")
    if not name:
        return default
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return default


def field_moment(
    fields: dict[str, Any], custom: dict[str, Any], name: str, zone: ZoneInfo
) -> datetime | None:
    """The moment in a standard or ``custom.<key>`` date / datetime field; a date means its
    midnight in ``zone``. None when unset or not a date."""
    value = custom.get(name.removeprefix("custom.")) if name.startswith("custom.") else None
    if not name.startswith("custom."):
        value = fields.get(name)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if len(value) > 10 else date.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(0), zone)
    return None


def _inside(local: datetime, node: WaitUntil) -> bool:
    if node.weekdays is not None and _WEEKDAYS[local.weekday()] not in node.weekdays:
        return False
    if node.between is None:
        return True
    start, end = node.between
    moment = local.time().replace(tzinfo=None)
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end  # a window across midnight


def next_in_window(moment: datetime, node: WaitUntil, zone: ZoneInfo) -> datetime:
    """The first instant at or after ``moment`` inside the node's weekday / time window."""
    local = moment.astimezone(zone)
    if _inside(local, node):
        return moment
    opens = [node.between[0] if node.between else time(0)]
    if node.between is not None and node.between[0] > node.between[1]:
        opens.append(time(0))
    for offset in range(0, 9):
        day = local.date() + timedelta(days=offset)
        for at in sorted(opens):
            candidate = datetime.combine(day, at, zone)
            if candidate > local and _inside(candidate, node):
                return candidate.astimezone(UTC)
    return moment  # no weekday given at all cannot happen (validated); be safe


def wait_until_moment(
    node: WaitUntil,
    anchor: datetime,
    now: datetime,
    fields: dict[str, Any],
    custom: dict[str, Any],
    default_zone: ZoneInfo,
) -> datetime:
    """When a wait_until started at ``anchor`` ends. A date field that is unset or past
    does not hold the contact; a window moment already past is taken from ``now``."""
    zone = contact_zone(fields, default_zone)
    start = anchor
    if node.date_field is not None:
        moment = field_moment(fields, custom, node.date_field, zone)
        if moment is not None:
            start = max(anchor, moment + (node.offset or timedelta(0)))
    if node.weekdays is None and node.between is None:
        return start
    found = next_in_window(start, node, zone)
    if found < now and not _inside(now.astimezone(zone), node):
        return next_in_window(now, node, zone)
    return found
