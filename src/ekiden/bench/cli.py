"""`ekiden bench ...`: the benchmark commands."""

from __future__ import annotations

import statistics
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


@bench_app.command("segments")
def segments(
    contacts: Annotated[int, typer.Option(min=100, help="Contacts in the population.")] = 1_000_000,
    events: Annotated[int, typer.Option(min=1_000, help="Events in the population.")] = 10_000_000,
    database_url: Annotated[
        str,
        typer.Option(help="sqlite:///… or postgresql://… (a scratch database is used)."),
    ] = "sqlite:///bench.db",
    repeat: Annotated[int, typer.Option(min=1, help="Full refreshes; medians reported.")] = 3,
    samples: Annotated[int, typer.Option(min=1, help="Freshness measurements.")] = 40,
) -> None:
    """Full refresh of a behavioural segment vs hand-written SQL, and event-to-entry freshness."""
    from ekiden.bench.segments import run_segments_bench

    report = run_segments_bench(
        database_url,
        contacts=contacts,
        events_count=events,
        repeat=repeat,
        freshness_samples=samples,
    )
    out.print(
        f"segments benchmark: {report.backend}, {report.contacts:,} contacts, "
        f"{report.events:,} events (generated in {report.generate_seconds:.1f} s); "
        f"segment: 部長/本部長, /pricing ≥ 2 in 30 days, not unsubscribed -> "
        f"{report.members:,} members"
    )
    out.print(f"{'run':>6}  {'full refresh s':>14}  {'no-change s':>11}  {'hand SQL s':>10}  ratio")
    for n, (full, same, hand) in enumerate(
        zip(report.full_refresh, report.unchanged_refresh, report.hand_written, strict=True), 1
    ):
        out.print(f"{n:>6}  {full:>14.3f}  {same:>11.3f}  {hand:>10.3f}  {full / hand:>5.2f}x")
    out.print(
        f"{'median':>6}  {report.full_median:>14.3f}  "
        f"{statistics.median(report.unchanged_refresh):>11.3f}  {report.hand_median:>10.3f}  "
        f"{report.full_median / report.hand_median:>5.2f}x"
    )
    if report.freshness:
        out.print(
            f"freshness (event committed -> segment_entered, worker running): "
            f"median {statistics.median(report.freshness):.3f} s, "
            f"p95 {report.freshness_p95:.3f} s over {len(report.freshness)} contacts, "
            f"{report.freshness_missed} missed"
        )
