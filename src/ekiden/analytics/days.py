"""Days in the user's time zone, computed inside the database.

A day number is the count of days since 1970-01-01 *in the zone*. Stored instants are naive
UTC; the local day of an instant is ``floor((epoch seconds + offset) / 86400)``, where the
offset is the zone's UTC offset in force at that instant. Offsets change (summer time), so the
expression is a CASE over the stretches of constant offset that cover the instants asked
about; Asia/Tokyo has one stretch and the CASE disappears.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, case, cast, extract, func, literal

EPOCH = date(1970, 1, 1)


def day_number(day: date) -> int:
    return (day - EPOCH).days


def day_of(number: int) -> date:
    return EPOCH + timedelta(days=number)


def _offset(zone: ZoneInfo, moment: datetime) -> int:
    delta = moment.astimezone(zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def offset_stretches(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """[(from, offset seconds)]: the offset in force from each instant on, covering
    [start, end); the first entry starts at ``start``. Changes are found hour by hour and
    then to the second."""
    start = start.astimezone(UTC)
    out = [(start, _offset(zone, start))]
    step = timedelta(hours=1)
    at = start
    while at < end:
        nxt = min(at + step, end)
        if _offset(zone, nxt) != out[-1][1]:
            low, high = at, nxt  # the change lies in (low, high]
            while high - low > timedelta(seconds=1):
                mid = low + (high - low) / 2
                if _offset(zone, mid) == out[-1][1]:
                    low = mid
                else:
                    high = mid
            high = high.replace(microsecond=0) + (
                timedelta(seconds=1) if high.microsecond else timedelta()
            )
            out.append((high, _offset(zone, high)))
        at = nxt
    return out


def _epoch_seconds(column: ColumnElement[datetime], dialect: str) -> ColumnElement[int]:
    if dialect == "postgresql":
        return cast(func.floor(extract("epoch", column)), Integer)
    return cast(func.strftime("%s", column), Integer)


def local_day(
    column: ColumnElement[datetime], zone: ZoneInfo, start: datetime, end: datetime, dialect: str
) -> ColumnElement[int]:
    """The day number in ``zone`` of the instant in ``column``, for instants in [start, end)."""
    seconds = _epoch_seconds(column, dialect)

    def day(offset: int) -> ColumnElement[int]:
        # instants after 1970 are positive, so integer division is the floor
        return (seconds + literal(offset)) // literal(86400)

    stretches = offset_stretches(zone, start, end)
    if len(stretches) == 1:
        return day(stretches[0][1])
    whens = [(column < at, day(stretches[i - 1][1])) for i, (at, _) in enumerate(stretches) if i]
    return case(*whens, else_=day(stretches[-1][1]))
