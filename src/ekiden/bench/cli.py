"""`ekiden bench ...`: the benchmark commands."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from ekiden.bench.ingest import BenchError, IngestReport, run_ingest_bench

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks on scratch databases.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@bench_app.command("ingest")
def ingest(
    events: Annotated[int, typer.Option(min=1, help="Events posted per repeat.")] = 20_000,
    batch_size: Annotated[int, typer.Option(min=1, max=2_000, help="Events per request.")] = 100,
    database_url: Annotated[
        str,
        typer.Option(
            help="sqlite:///… (a scratch file in a temporary folder) or postgresql://… "
            "(a scratch database is created on that server and dropped afterwards)."
        ),
    ] = "sqlite:///bench.db",
    repeat: Annotated[int, typer.Option(min=1, help="Runs; medians are reported.")] = 3,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    clients: Annotated[int, typer.Option(min=1, help="Concurrent HTTP client threads.")] = 4,
) -> None:
    """Events/s through POST /v1/batch end to end vs the raw bulk-insert rate."""
    try:
        report = run_ingest_bench(
            database_url,
            events_count=events,
            batch_size=batch_size,
            repeat=repeat,
            workers=workers,
            clients=clients,
        )
    except BenchError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    print_report(report)


def print_report(report: IngestReport) -> None:
    out.print(
        f"ingest benchmark: {report.backend}, {report.events:,} events per run in batches of "
        f"{report.batch_size}, {report.workers} server worker(s), {report.clients} clients"
    )
    out.print(f"{'run':>6}  {'http events/s':>14}  {'raw rows/s':>12}  {'ratio':>6}  rows")
    for number, run in enumerate(report.runs, 1):
        out.print(
            f"{number:>6}  {run.http_rate:>14,.0f}  {run.raw_rate:>12,.0f}  "
            f"{run.ratio:>6.1%}  {run.stored:,}/{report.events:,} stored"
        )
    out.print(
        f"{'median':>6}  {report.http_median:>14,.0f}  {report.raw_median:>12,.0f}  "
        f"{report.ratio_median:>6.1%}"
    )
