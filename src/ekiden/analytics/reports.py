"""The report framework: a period in the user's time zone, an optional filter restricting the
contacts, report options, and a result made of named tables of rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Connection, true

from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid, NotFound
from ekiden.rules.sql import SqlEnv, compile_filter
from ekiden.segments.service import validate_filter


def parse_day(value: str, name: str) -> date:
    """A calendar day written YYYY-MM-DD; Invalid naming the parameter otherwise."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid(
            f"{name!r} must be a date written YYYY-MM-DD, not {value!r}",
            code="invalid_date",
            details={"parameter": name, "value": value},
        ) from None


@dataclass(frozen=True)
class Period:
    """The days ``first`` to ``last``, both included, in time zone ``zone``."""

    first: date
    last: date
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise Invalid(
                f"the period ends ({self.last}) before it starts ({self.first})",
                code="invalid_period",
                details={"from": self.first.isoformat(), "to": self.last.isoformat()},
            )

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def starts_at(self) -> datetime:
        """The first instant of the period (midnight of ``first`` in the zone)."""
        return datetime.combine(self.first, time(), self.zone)

    @property
    def ends_at(self) -> datetime:
        """The first instant after the period (midnight after ``last`` in the zone)."""
        return datetime.combine(self.last + timedelta(days=1), time(), self.zone)

    def previous(self) -> Period:
        """The period of equal length just before this one."""
        return Period(
            self.first - timedelta(days=self.days), self.first - timedelta(days=1), self.zone
        )


@dataclass(frozen=True)
class ReportParams:
    period: Period
    filter: dict[str, Any] | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    locale: str = "ja"


class ReportTable(BaseModel):
    name: str
    columns: list[str]
    rows: list[list[Any]]


class ReportResult(BaseModel):
    report: str
    period_from: date
    period_to: date
    zone: str
    filter: dict[str, Any] | None
    options: dict[str, Any]
    notes: list[str]
    tables: list[ReportTable]


@dataclass(frozen=True)
class Option:
    description: str
    parse: Callable[[str], Any]
    default: Any = None


def whole_number(unit: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """An option parser for a whole number of ``unit`` from ``low`` (to ``high``), whose errors
    say what was expected."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be a whole number of {unit}, not {value!r}") from None
        if high is None and number < low:
            raise ValueError(f"must be at least {low}, not {number}")
        if high is not None and not low <= number <= high:
            raise ValueError(f"must be between {low} and {high} {unit}, not {number}")
        return number

    return parse


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    options: dict[str, Option]
    run: Callable[[Connection, Clock, ReportParams, dict[str, Any]], ReportResult]


REPORTS: dict[str, Report] = {}


def register(report: Report) -> Report:
    REPORTS[report.name] = report
    return report


def get_report(name: str) -> Report:
    _load_builtin()
    found = REPORTS.get(name)
    if found is None:
        raise NotFound(
            f"no report named {name!r}; known reports: {', '.join(sorted(REPORTS))}",
            code="unknown_report",
            details={"report": name, "known": sorted(REPORTS)},
        )
    return found


def _load_builtin() -> None:
    from ekiden.analytics import (  # noqa: F401  (each registers itself)
        campaigns,
        email_report,
        funnel,
        intent,
        journey_report,
        prospects,
    )


def _options(report: Report, given: Mapping[str, str]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(report.options))
    if unknown:
        raise Invalid(
            f"report {report.name!r} has no option {unknown[0]!r}; "
            f"options: {', '.join(sorted(report.options)) or 'none'}",
            code="unknown_option",
            details={"option": unknown[0], "known": sorted(report.options)},
        )
    values: dict[str, Any] = {}
    for key, option in report.options.items():
        if key not in given:
            values[key] = option.default
            continue
        try:
            values[key] = option.parse(given[key])
        except ValueError as exc:
            raise Invalid(
                f"option {key!r}: {exc}", code="invalid_option", details={"option": key}
            ) from None
    return values


def run_report(conn: Connection, clock: Clock, name: str, params: ReportParams) -> ReportResult:
    """Run report ``name``; Invalid / NotFound name the offending parameter."""
    report = get_report(name)
    options = _options(report, params.options)
    return report.run(conn, clock, params, options)


def contact_condition(
    conn: Connection, clock: Clock, raw_filter: dict[str, Any] | None, zone: ZoneInfo
) -> ColumnElement[bool]:
    """Live contacts (merged-away ones excluded) matching ``raw_filter`` now."""
    live = contacts.c.merged_into_id.is_(None)
    if raw_filter is None:
        return live & true()
    flt, catalog = validate_filter(conn, raw_filter, zone)
    env = SqlEnv(catalog=catalog, now=clock.now(), zone=zone, dialect=conn.dialect.name)
    return live & compile_filter(flt, env)


def to_csv(result: ReportResult) -> str:
    """Every table as a block: a header row whose first cell is the table name, its rows
    (first cell empty), and an empty line between blocks."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for i, table in enumerate(result.tables):
        if i:
            writer.writerow([])
        writer.writerow([table.name, *table.columns])
        for row in table.rows:
            writer.writerow(["", *("" if v is None else v for v in row)])
    return out.getvalue()
