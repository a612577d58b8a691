"""Running a report the way the report tests do: by name, over a period, with a filter,
options and a language."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from ekiden.analytics.reports import Period, ReportParams, ReportResult, run_report
from ekiden.clock import FrozenClock


def run_named(
    engine: Engine,
    clock: FrozenClock,
    name: str,
    *,
    period: Period,
    filter: dict[str, Any] | None = None,
    options: dict[str, str] | None = None,
    locale: str = "ja",
) -> ReportResult:
    params = ReportParams(period=period, filter=filter, options=options or {}, locale=locale)
    with engine.connect() as conn:
        return run_report(conn, clock, name, params)
