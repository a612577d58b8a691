"""``ekiden report <name>``: run a report and print it as tables (or CSV)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ekiden.analytics.reports import Period, ReportParams, parse_day, run_report, to_csv
from ekiden.analytics.router import parse_filter_text
from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.errors import EkidenError

err = Console(stderr=True)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def report_command(
    name: Annotated[str, typer.Argument(help="The report, e.g. funnel.")],
    from_: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    to: Annotated[str, typer.Option("--to", help="Last day (included), YYYY-MM-DD.")],
    filter_: Annotated[
        str | None,
        typer.Option("--filter", help="Only contacts matching this filter (JSON)."),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="A report option as key=value, e.g. stalled_days=14."),
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of tables.")] = False,
    locale: Annotated[str | None, typer.Option(help="ja or en (default: the setting).")] = None,
) -> None:
    """Run a report over a period (days in the configured time zone) and print it."""
    settings = load_settings()
    if locale is not None and locale not in ("ja", "en"):
        err.print(f"[red]error:[/red] --locale must be ja or en, not {locale!r}", highlight=False)
        raise typer.Exit(1)
    options: dict[str, str] = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            err.print(f"[red]error:[/red] option {item!r} is not key=value", highlight=False)
            raise typer.Exit(1)
        options[key.strip()] = value.strip()
    try:
        params = ReportParams(
            period=Period(parse_day(from_, "--from"), parse_day(to, "--to"), settings.zone),
            filter=parse_filter_text(filter_),
            options=options,
            locale=locale or settings.default_locale,
        )
        with create_db_engine(settings.database_url).connect() as conn:
            result = run_report(conn, SystemClock(), name, params)
    except EkidenError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    if csv:
        sys.stdout.write(to_csv(result))
        return
    console = Console()
    console.print(
        f"[bold]{result.report}[/bold] {result.period_from} – {result.period_to} ({result.zone})"
    )
    for note in result.notes:
        console.print(note, highlight=False)
    for table in result.tables:
        shown = Table(*table.columns, title=table.name)
        for row in table.rows:
            shown.add_row(*(_cell(v) for v in row))
        console.print(shown)
