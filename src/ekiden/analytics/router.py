"""REST API for reports: ``GET /api/reports/{name}`` as JSON or CSV (admin key)."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response

from ekiden.analytics.reports import Period, ReportParams, ReportResult, parse_day, run_report
from ekiden.analytics.reports import to_csv as result_csv
from ekiden.errors import Invalid
from ekiden.web.deps import AdminKey, Ctx, ReadConn

router = APIRouter(prefix="/api", tags=["reports"])

_RESERVED = {"from", "to", "filter", "format", "locale"}


def parse_filter_text(text: str | None) -> dict[str, Any] | None:
    """The ``filter`` parameter: one filter-language object written as JSON."""
    if text is None or not text.strip():
        return None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise Invalid(
            f"'filter' is not valid JSON: {exc}",
            code="invalid_filter",
            details={"parameter": "filter"},
        ) from None
    if not isinstance(raw, dict):
        raise Invalid(
            "'filter' must be one filter object",
            code="invalid_filter",
            details={"parameter": "filter"},
        )
    return raw


@router.get("/reports/{name}", response_model=ReportResult)
def get_report(
    name: str,
    request: Request,
    _: AdminKey,
    conn: ReadConn,
    ctx: Ctx,
    from_: str = Query(alias="from", description="First day, YYYY-MM-DD (in the time zone)."),
    to: str = Query(description="Last day, included, YYYY-MM-DD."),
    filter: str | None = Query(None, description="A filter-language condition as JSON."),
    format: Literal["json", "csv"] = "json",
    locale: Literal["ja", "en"] | None = None,
) -> Any:
    """Run report ``name`` over the days ``from``..``to`` (both included) in the configured
    time zone. Other query parameters are the report's options (e.g. ``stalled_days``)."""
    period = Period(parse_day(from_, "from"), parse_day(to, "to"), ctx.settings.zone)
    options = {k: v for k, v in request.query_params.items() if k not in _RESERVED}
    params = ReportParams(
        period=period,
        filter=parse_filter_text(filter),
        options=options,
        locale=locale or ctx.settings.default_locale,
    )
    result = run_report(conn, ctx.clock, name, params)
    if format == "csv":
        filename = f"{name}-{period.first}-{period.last}.csv"
        return Response(
            result_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return result
