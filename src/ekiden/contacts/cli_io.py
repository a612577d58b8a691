"""``ekiden import contacts`` and ``ekiden export contacts|events``: parse, call, print."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ekiden.clock import SystemClock
from ekiden.config import ConfigError, Settings, load_settings
from ekiden.contacts.exporter import (
    CsvEncoder,
    ExportEncoding,
    contact_chunks,
    contact_header,
    count_contacts,
    stream_csv,
)
from ekiden.contacts.importer import ImportOptions, ImportRejected, ImportReport, run_import
from ekiden.contacts.importer_mapping import load_mapping_file, parse_map_options
from ekiden.db import create_db_engine
from ekiden.errors import EkidenError
from ekiden.tracking.export import EVENT_COLUMNS, EventFilters, count_events, event_chunks
from ekiden.tracking.export import parse_moment as parse_time

import_app = typer.Typer(no_args_is_help=True, help="Import data from CSV files.")
export_app = typer.Typer(no_args_is_help=True, help="Export data as CSV.")
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def print_report(report: ImportReport) -> None:
    """The summary and every invalid row, as a table on stderr."""
    verb = "would create" if report.dry_run or not report.stored else "created"
    err.print(
        f"{report.filename} ({report.encoding}): {report.rows_total} rows, "
        f"{report.rows_invalid} invalid; {verb} {report.rows_created}, "
        f"{verb.replace('create', 'update')} {report.rows_updated}"
        + (f"; import id {report.import_id}" if report.import_id else ""),
        highlight=False,
        markup=False,
    )
    for title, items in (("Invalid rows", report.errors), ("Warnings", report.warnings)):
        if not items:
            continue
        table = Table(title=title, title_justify="left")
        for name in ("line", "column", "email", "reason"):
            table.add_column(name, overflow="fold")
        for item in items:
            table.add_row(str(item.line), item.column or "", item.email or "", item.reason)
        err.print(table)


@import_app.command("contacts")
def import_contacts(
    file: Annotated[Path, typer.Argument(help="The CSV file (UTF-8 or Shift_JIS/CP932).")],
    mapping: Annotated[
        Path | None, typer.Option(help="YAML or JSON file of 'CSV column: field' pairs.")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="COLUMN=field (repeatable); field 'ignore' skips a column."),
    ] = None,
    encoding: Annotated[str, typer.Option(help="auto, utf-8, shift_jis or cp932.")] = "auto",
    dry_run: Annotated[bool, typer.Option(help="Check every row, store nothing.")] = False,
    mode: Annotated[
        str, typer.Option(help="all-or-nothing (any invalid row: store nothing) or valid-rows.")
    ] = "all-or-nothing",
    tag: Annotated[
        list[str] | None, typer.Option(help="Tag every imported contact (repeatable).")
    ] = None,
    consent: Annotated[str, typer.Option(help="granted (needs --consent-text) or none.")] = "none",
    consent_text: Annotated[
        str | None, typer.Option(help="The consent wording the people agreed to.")
    ] = None,
    ignore_unknown: Annotated[
        bool, typer.Option(help="Skip columns that map to no field instead of failing.")
    ] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
) -> None:
    """Import contacts from a CSV file (e.g. trade-show business cards).

    Exit code 0 when the import stored its rows (or a dry run found no invalid row),
    1 when rows are invalid and nothing was stored, 2 for unusable input.
    """
    try:
        overrides = load_mapping_file(mapping) if mapping else {}
        overrides.update(parse_map_options(map_ or []))
        options = ImportOptions.model_validate(
            {
                "encoding": encoding,
                "mode": mode,
                "mapping": overrides,
                "ignore_unknown": ignore_unknown,
                "tags": tag or [],
                "consent": consent,
                "consent_text": consent_text,
                "dry_run": dry_run,
            }
        )
    except ValidationError as exc:
        raise _fail(
            "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors()), 2
        ) from None
    except EkidenError as exc:
        raise _fail(exc.message, 2) from None
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}", 2) from None
    engine = create_db_engine(_settings().database_url)
    try:
        with _progress() as bar, engine.begin() as conn:
            task = bar.add_task("checking", total=None)

            def step(stage: str, done: int, total: int) -> None:
                bar.update(task, description=stage, completed=done, total=total)

            report = run_import(
                conn, SystemClock(), data, filename=file.name, options=options, progress=step
            )
    except ImportRejected as exc:
        report = exc.report
    except EkidenError as exc:
        raise _fail(exc.message, 2) from None
    finally:
        engine.dispose()
    print_report(report)
    if json_:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    if report.rows_invalid and (report.dry_run or not report.stored):
        if not report.stored and not report.dry_run:
            err.print("nothing was imported", style="red")
        raise typer.Exit(1)


def _write(output: Path | None, chunks: Iterator[bytes]) -> None:
    if output is None:
        sys.stdout.flush()
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    try:
        target = output.open("wb")
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror}", 2) from None
    with target:
        for chunk in chunks:
            target.write(chunk)


def _export(
    output: Path | None,
    header: list[str],
    rows: Iterator[list[list[object]]],
    total: int,
    encoding: ExportEncoding,
    what: str,
) -> None:
    encoder = CsvEncoder(encoding)

    def counted() -> Iterator[list[list[object]]]:
        with _progress() as bar:
            task = bar.add_task(f"exporting {what}", total=total)
            for chunk in rows:
                yield chunk
                bar.advance(task, len(chunk))

    _write(output, stream_csv(header, counted(), encoder))
    err.print(f"exported {total} {what}" + (f" to {output}" if output else ""), highlight=False)
    if encoder.replaced:
        err.print(
            f"warning: {encoder.replaced} characters cannot be written in {encoding} "
            "and were replaced with '?'; use --encoding utf-8-sig to keep them",
            style="yellow",
        )


EncodingOption = Annotated[
    str, typer.Option(help="utf-8, utf-8-sig (Excel) or cp932 (Excel, Japanese Windows).")
]
OutputOption = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write to FILE instead of stdout.")
]


def _encoding(value: str) -> ExportEncoding:
    if value not in ("utf-8", "utf-8-sig", "cp932"):
        raise _fail(f"--encoding must be utf-8, utf-8-sig or cp932, not {value!r}", 2)
    return value  # type: ignore[return-value]


@export_app.command("contacts")
def export_contacts(output: OutputOption = None, encoding: EncodingOption = "utf-8") -> None:
    """Export every contact as CSV: standard fields, tags, consent, custom.<key> columns."""
    chosen = _encoding(encoding)
    engine = create_db_engine(_settings().database_url)
    header = contact_header(engine)
    _export(
        output, header, contact_chunks(engine, header), count_contacts(engine), chosen, "contacts"
    )
    engine.dispose()


@export_app.command("events")
def export_events(
    output: OutputOption = None,
    encoding: EncodingOption = "utf-8",
    since: Annotated[
        str | None, typer.Option(help="Only events at or after this ISO time (with offset).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only events before this ISO time (with offset).")
    ] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only events of this type.")] = None,
    contact: Annotated[int | None, typer.Option(help="Only this contact's events.")] = None,
) -> None:
    """Export the behaviour history as CSV (properties and context as JSON)."""
    chosen = _encoding(encoding)
    try:
        filters = EventFilters(
            since=parse_time(since, name="--since") if since else None,
            until=parse_time(until, name="--until") if until else None,
            type=type_,
            contact_id=contact,
        )
    except EkidenError as exc:
        raise _fail(exc.message, 2) from None
    engine = create_db_engine(_settings().database_url)
    _export(
        output,
        list(EVENT_COLUMNS),
        event_chunks(engine, filters),
        count_events(engine, filters),
        chosen,
        "events",
    )
    engine.dispose()
