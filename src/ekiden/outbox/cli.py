"""``ekiden bounces …`` and ``ekiden outbox …``: bounce reports from an MTA, delivery state.

An MTA pipes each message for the bounce address to ``ekiden bounces ingest -``; Postfix
example (master.cf): ``ekiden-bounces unix - n n - - pipe user=ekiden
argv=/usr/local/bin/ekiden bounces ingest --recipient ${recipient} -``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ekiden.clock import SystemClock
from ekiden.config import ConfigError, load_settings
from ekiden.db import create_db_engine
from ekiden.errors import EkidenError
from ekiden.outbox.bounces import ingest_report
from ekiden.outbox.dispatcher import deliver_due
from ekiden.outbox.models import Status
from ekiden.outbox.service import list_entries

bounces_app = typer.Typer(no_args_is_help=True, help="Bounce and complaint reports.")
outbox_app = typer.Typer(no_args_is_help=True, help="The outbox of emails and webhooks.")
err = Console(stderr=True)

# Exit codes an MTA pipe understands (sysexits.h): a bad report is returned to nobody.
EX_DATAERR = 65
EX_TEMPFAIL = 75


@bounces_app.command("ingest")
def ingest_command(
    file: Annotated[str, typer.Argument(help="A raw RFC 5322 message, or - for stdin.")],
    recipient: Annotated[
        str | None, typer.Option(help="The envelope recipient (the VERP bounce address).")
    ] = None,
) -> None:
    """Read one bounce (RFC 3464 DSN) or complaint (ARF) and act on it: hard bounces and
    complaints suppress the contact."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EX_TEMPFAIL) from None
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot read {file}: {exc.strerror}", highlight=False)
        raise typer.Exit(EX_DATAERR) from None
    engine = create_db_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            result = ingest_report(conn, SystemClock(), settings, raw, recipient=recipient)
    except EkidenError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        raise typer.Exit(EX_DATAERR) from None
    for item in result.items:
        who = f"contact {item.contact_id}" if item.contact_id else "no known contact"
        done = ", suppressed" if item.suppressed else ""
        err.print(f"{item.kind} {item.status or ''} {item.recipient or '?'}: {who}{done}")
    if not result.items:
        err.print("the report names no failed recipient")


@outbox_app.command("list")
def list_command(
    status: Annotated[
        str | None, typer.Option(help="pending, sending, sent, failed or cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """Show outbox entries, newest first."""
    settings = load_settings()
    try:
        wanted = Status(status) if status else None
    except ValueError:
        err.print("[red]error:[/red] --status must be one of " + ", ".join(s.value for s in Status))
        raise typer.Exit(2) from None
    with create_db_engine(settings.database_url).connect() as conn:
        entries = list_entries(conn, status=wanted, limit=limit)
    table = Table("id", "kind", "key", "status", "attempts", "next attempt", "last error")
    for e in entries:
        when = e.next_attempt_at.astimezone(settings.zone).isoformat(timespec="seconds")
        table.add_row(
            str(e.id), e.kind, e.key, e.status.value, str(e.attempts), when, e.last_error or ""
        )
    Console().print(table)


@outbox_app.command("deliver")
def deliver_command(
    limit: Annotated[int, typer.Option(help="Deliver at most this many.")] = 1000,
) -> None:
    """Deliver what is due now, once (the worker does this continuously)."""
    settings = load_settings()
    engine = create_db_engine(settings.database_url)
    handled = deliver_due(engine, SystemClock(), settings, limit=limit)
    err.print(f"{handled} deliveries attempted")
