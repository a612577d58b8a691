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

# Options the population benchmarks share.
Population = Annotated[int, typer.Option(min=100, help="Contacts in the population.")]
PopulationEvents = Annotated[int, typer.Option(min=1_000, help="Events in the population.")]
ScratchDatabase = Annotated[
    str, typer.Option(help="sqlite:///… or postgresql://… (a scratch database is used).")
]


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
    contacts: Population = 1_000_000,
    events: PopulationEvents = 10_000_000,
    database_url: ScratchDatabase = "sqlite:///bench.db",
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


@bench_app.command("training")
def training(
    contacts: Annotated[int, typer.Option(min=200, help="Contacts in the population.")] = 100_000,
    events: PopulationEvents = 1_000_000,
    database_url: ScratchDatabase = "sqlite:///bench.db",
    repeat: Annotated[int, typer.Option(min=1, help="Trainings; medians reported.")] = 3,
) -> None:
    """Predictive training (features from the DB, evaluation, fit, scoring) vs the bare fit."""
    from ekiden.predictive.bench import run_training_bench

    report = run_training_bench(
        database_url, contacts_count=contacts, events_count=events, repeat=repeat
    )
    out.print(
        f"training benchmark: {report.backend}, {report.contacts:,} contacts, "
        f"{report.events:,} events (generated in {report.generate_seconds:.1f} s); "
        f"{report.converted:,} converted, {report.not_converted:,} not converted, "
        f"{report.scored:,} open leads scored; hold-out ROC-AUC {report.auc:.3f}"
    )
    out.print(
        f"{'run':>6}  {'pipeline s':>10}  {'(cpu s)':>8}  {'features s':>10}  {'bare fit s':>10}"
        "  ratio"
    )
    for n, (whole, cpu, feats, bare) in enumerate(
        zip(report.pipeline, report.pipeline_cpu, report.features, report.baseline, strict=True),
        1,
    ):
        out.print(
            f"{n:>6}  {whole:>10.2f}  {cpu:>8.2f}  {feats:>10.2f}  {bare:>10.2f}  "
            f"{whole / bare:>5.1f}x"
        )
    out.print(
        f"{'median':>6}  {report.pipeline_median:>10.2f}  "
        f"{statistics.median(report.pipeline_cpu):>8.2f}  {report.features_median:>10.2f}  "
        f"{report.baseline_median:>10.2f}  {report.pipeline_median / report.baseline_median:>5.1f}x"
    )


@bench_app.command("email")
def email(
    messages: Annotated[int, typer.Option(min=10, help="Messages sent per run.")] = 5_000,
    database_url: ScratchDatabase = "sqlite:///bench.db",
    repeat: Annotated[int, typer.Option(min=1, help="Runs; medians are reported.")] = 3,
) -> None:
    """Personalised, tracked, DKIM-signed emails/s from one worker vs plain smtplib."""
    from ekiden.bench.email import BenchError as EmailBenchError
    from ekiden.bench.email import run_email_bench

    try:
        report = run_email_bench(database_url, messages=messages, repeat=repeat)
    except EmailBenchError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    out.print(
        f"email benchmark: {report.backend}, {report.messages:,} messages per run "
        f"(personalised, tracked, DKIM-signed, ~{report.average_bytes:,} bytes), "
        "one worker, local aiosmtpd in another process"
    )
    out.print(
        f"{'run':>6}  {'pipeline msg/s':>14}  {'smtplib msg/s':>13}  {'ratio':>6}  "
        f"{'queue msg/s':>11}  {'outbox mail msg/s':>17}  received"
    )
    for number, run in enumerate(report.runs, 1):
        out.print(
            f"{number:>6}  {run.pipeline_rate:>14,.0f}  {run.smtplib_rate:>13,.0f}  "
            f"{run.ratio:>6.1%}  {run.delivered / run.queue_seconds:>11,.0f}  "
            f"{run.outbox_rate:>17,.0f}  {run.received:,}/{report.messages:,}"
        )
    out.print(
        f"{'median':>6}  {report.pipeline_median:>14,.0f}  {report.smtplib_median:>13,.0f}  "
        f"{report.ratio_median:>6.1%}  {report.queue_median:>11,.0f}  "
        f"{report.outbox_median:>17,.0f}"
    )
    out.print(
        f"worker CPU per message (median): pipeline {report.cpu_median('pipeline'):.2f} ms, "
        f"smtplib {report.cpu_median('smtplib'):.2f} ms, "
        f"outbox mail {report.cpu_median('outbox'):.2f} ms"
    )
    out.print(
        "SMTP server CPU per message (median): receiving the pipeline's "
        f"{report.cpu_median('server_pipeline'):.2f} ms, smtplib's "
        f"{report.cpu_median('server_smtplib'):.2f} ms"
    )
    out.print(
        "pipeline: send queued -> outbox -> consent check -> render + tracking -> DKIM -> SMTP "
        "-> marked sent + email_delivered; smtplib: the same rendered bytes, one connection, "
        "no database; outbox mail: the same texts as plain notifications through the outbox, "
        "DKIM and SMTP (no template rendering)"
    )


@bench_app.command("scoring")
def scoring(
    contacts: Population = 1_000_000,
    events: PopulationEvents = 10_000_000,
    database_url: ScratchDatabase = "sqlite:///bench.db",
    repeat: Annotated[int, typer.Option(min=1, help="Full recomputes; medians reported.")] = 3,
    samples: Annotated[int, typer.Option(min=1, help="Incremental measurements.")] = 40,
) -> None:
    """Full recompute of two scores vs a hand-written SQL aggregate, and event-to-score latency."""
    from ekiden.bench.scoring import run_scoring_bench

    report = run_scoring_bench(
        database_url, contacts=contacts, events_count=events, repeat=repeat, samples=samples
    )
    out.print(
        f"scoring benchmark: {report.backend}, {report.contacts:,} contacts, "
        f"{report.events:,} events (generated in {report.generate_seconds:.1f} s); "
        f"behaviour (6 rules: caps, decay, expiry) and fit (2 rules) -> "
        f"{report.scored.get('behaviour', 0):,} / {report.scored.get('fit', 0):,} contacts "
        f"scored, {report.awards:,} awards"
    )
    out.print(
        f"{'run':>6}  {'full recompute s':>16}  {'no-change s':>11}  {'hand SQL s':>10}  ratio"
    )
    for n, (full, same, hand) in enumerate(
        zip(report.full_recompute, report.unchanged_recompute, report.hand_written, strict=True),
        1,
    ):
        out.print(f"{n:>6}  {full:>16.3f}  {same:>11.3f}  {hand:>10.3f}  {full / hand:>5.2f}x")
    out.print(
        f"{'median':>6}  {report.full_median:>16.3f}  "
        f"{statistics.median(report.unchanged_recompute):>11.3f}  {report.hand_median:>10.3f}  "
        f"{report.full_median / report.hand_median:>5.2f}x"
    )
    if report.incremental:
        out.print(
            f"incremental (event committed -> new score readable, worker running): "
            f"median {statistics.median(report.incremental):.3f} s, "
            f"p95 {report.incremental_p95:.3f} s over {len(report.incremental)} contacts, "
            f"{report.incremental_missed} missed"
        )


@bench_app.command("reports")
def reports(
    contacts: Population = 1_000_000,
    events: PopulationEvents = 10_000_000,
    database_url: ScratchDatabase = "sqlite:///bench.db",
    repeat: Annotated[int, typer.Option(min=1, help="Runs of each report; medians reported.")] = 3,
) -> None:
    """Each report over the last 365 days vs a count(*) of the period's events."""
    from ekiden.bench.reports import describe, run_reports_bench

    bench = run_reports_bench(database_url, contacts=contacts, events_count=events, repeat=repeat)
    for line in describe(bench):
        out.print(line, soft_wrap=True)


@bench_app.command("journeys")
def journeys(
    database_url: Annotated[
        str,
        typer.Option(
            help="postgresql://… (a scratch database is created on that server and dropped "
            "afterwards) or sqlite:///… (a scratch file in a temporary folder)."
        ),
    ],
    contacts: Annotated[
        int, typer.Option(min=100, help="Contacts enrolled in the 6-node journey.")
    ] = 100_000,
    workers: Annotated[
        list[int] | None,
        typer.Option(min=1, help="Worker processes; repeat for several (default 1 and 2)."),
    ] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per worker count; medians.")] = 3,
    batch: Annotated[
        int, typer.Option(min=1, max=5_000, help="Enrolments a worker claims at once.")
    ] = 500,
    decision_contacts: Annotated[
        int, typer.Option(min=0, help="Enrolled contacts for the one-decision run (0: skip).")
    ] = 1_000_000,
) -> None:
    """Journey node executions/s with 1 and 2 worker processes vs a hand-written claim loop."""
    from ekiden.bench.journeys import BenchError as JourneysBenchError
    from ekiden.bench.journeys import run_journeys_bench

    try:
        report = run_journeys_bench(
            database_url,
            contacts=contacts,
            workers=sorted(set(workers or [1, 2])),
            repeat=repeat,
            batch=batch,
            decision_contacts=decision_contacts,
        )
    except JourneysBenchError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    out.print(
        f"journeys benchmark: {report.backend}, {report.contacts:,} contacts through trigger → "
        f"send_email → wait 1d → branch → webhook (yes side) → change_stage, batches of "
        f"{report.batch}; baseline: hand-written claim + history row + update per batch"
    )
    out.print(
        f"{'workers':>7}  {'run':>3}  {'node execs':>10}  {'seconds':>7}  {'execs/s':>8}  "
        f"{'per worker':>10}  {'RSS peak MB':>11}  {'RSS growth MB':>13}"
    )
    for count, runs in sorted(report.runs.items()):
        for number, run in enumerate(runs, 1):
            out.print(
                f"{count:>7}  {number:>3}  {run.node_executions:>10,}  {run.seconds:>7.1f}  "
                f"{run.rate:>8,.0f}  {run.rate / count:>10,.0f}  {run.rss_peak():>11.1f}  "
                f"{run.rss_growth():>13.1f}"
            )
        out.print(
            f"{count:>7}  {'med':>3}  {'':>10}  {'':>7}  {report.median(count):>8,.0f}  "
            f"{report.median(count) / count:>10,.0f}"
        )
    out.print(
        f"baseline (hand-written loop, one process): median {report.baseline_median:,.0f} rows/s "
        f"over {len(report.baseline)} runs; engine with 1 worker / baseline: "
        + (f"{report.median(1) / report.baseline_median:.1%}" if 1 in report.runs else "(not run)")
    )
    scaling = report.scaling()
    if scaling is not None:
        out.print(f"two workers / one worker: {scaling:.2f}x")
    if report.decision is not None:
        decision = report.decision
        out.print(
            f"one decision over {decision.enrolled:,} enrolled contacts ({decision.workers} "
            f"worker(s)): {decision.seconds:.1f} s ({decision.enrolled / decision.seconds:,.0f} "
            f"contacts/s), {decision.picked:,} took the yes branch"
        )
