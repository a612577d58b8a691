"""``ekiden journeys …``: list, load, activate, enrol and show statistics from the shell."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ekiden.clock import Clock, FrozenClock, SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.errors import EkidenError, NotFound
from ekiden.i18n import gettext
from ekiden.journeys import reports, service

journeys_app = typer.Typer(no_args_is_help=True, help="Journeys (scenarios).")
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


@journeys_app.command("list")
def list_command() -> None:
    """List journeys with their status and current version."""
    settings = load_settings()
    with create_db_engine(settings.database_url).connect() as conn:
        found = service.list_journeys(conn)
    table = Table("key", "name", "status", "version")
    for j in found:
        table.add_row(j.key, j.name, j.status, str(j.version))
    Console().print(table)


@journeys_app.command("load")
def load_command(
    path: Annotated[Path, typer.Argument(help="A journey definition, YAML or JSON.")],
) -> None:
    """Create the journey (a draft), or store the file as its next version."""
    settings = load_settings()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    clock = SystemClock()
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            key = raw.get("key") if isinstance(raw, dict) else None
            try:
                service.journey_row(conn, str(key))
            except NotFound:
                done = service.create_journey(conn, clock, raw, settings.zone)
            else:
                done = service.update_journey(conn, clock, str(key), raw, settings.zone)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    err.print(
        gettext(
            settings.default_locale,
            "Journey %(key)s: version %(version)s (%(status)s)",
            key=done.key,
            version=done.version,
            status=done.status,
        )
    )


@journeys_app.command("activate")
def activate_command(key: Annotated[str, typer.Argument(help="The journey's key.")]) -> None:
    """Start the journey: its triggers enrol contacts from now on."""
    settings = load_settings()
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            service.activate_journey(conn, SystemClock(), key, settings.zone)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    err.print(gettext(settings.default_locale, "Journey %(key)s is active", key=key))


@journeys_app.command("enrol")
def enrol_command(
    key: Annotated[str, typer.Argument(help="The journey's key.")],
    contact: Annotated[list[int], typer.Option("--contact", help="A contact id (repeatable).")],
) -> None:
    """Enrol contacts by id; the worker runs them."""
    settings = load_settings()
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            enrolled, skipped = service.enrol_contacts(
                conn, SystemClock(), key, contact, zone=settings.zone
            )
    except EkidenError as exc:
        raise _fail(exc.message) from None
    err.print(
        gettext(
            settings.default_locale,
            "Enrolled %(enrolled)s, skipped %(skipped)s",
            enrolled=len(enrolled),
            skipped=len(skipped),
        )
    )


@journeys_app.command("examples")
def examples_command(
    load: Annotated[
        bool,
        typer.Option(
            "--load",
            help="Create them all as drafts, with the email templates and forms they need.",
        ),
    ] = False,
) -> None:
    """List the example journeys shipped with the product, or load them."""
    from ekiden.journeys import bundled

    settings = load_settings()
    found = bundled.examples()
    table = Table("key", "name", "file")
    for example in found:
        table.add_row(example.key, example.name, example.file)
    Console().print(table)
    if not load:
        return
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            loaded = bundled.load_examples(conn, SystemClock(), settings.zone)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    err.print(
        gettext(
            settings.default_locale,
            "Created %(journeys)s journeys (drafts), %(emails)s email templates and "
            "%(forms)s forms; existing ones were kept",
            journeys=len(loaded.journeys),
            emails=len(loaded.emails),
            forms=len(loaded.forms),
        )
    )


@journeys_app.command("stats")
def stats_command(key: Annotated[str, typer.Argument(help="The journey's key.")]) -> None:
    """Per-node statistics: entered, waiting, passed, exited, converted, failed."""
    settings = load_settings()
    try:
        with create_db_engine(settings.database_url).connect() as conn:
            found = reports.journey_stats(conn, key)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    table = Table("node", "type", "entered", "waiting", "passed", "exited", "converted", "failed")
    for n in found.nodes:
        table.add_row(
            n.node,
            n.type,
            *(str(v) for v in (n.entered, n.waiting, n.passed, n.exited, n.converted, n.failed)),
        )
    Console().print(table)
    err.print(
        gettext(
            settings.default_locale,
            "Enrolled %(enrolled)s: live %(live)s, completed %(completed)s, exited %(exited)s, "
            "converted %(converted)s, failed %(failed)s",
            **found.model_dump(exclude={"key", "nodes"}),
        )
    )


_ASSUMPTIONS = {
    "fields_now": "Contact fields, tags, lists, segments and scores are taken as they are now; "
    "events as they happened.",
    "simulated_emails_unopened": "Emails of the simulation were never sent: nobody opened or "
    "clicked them, so waits for those opens or clicks time out (marked * in the table).",
    "no_side_effects": "Nothing was sent or stored; tags, lists, fields, stages and points "
    "the journey sets are applied in memory only.",
    "segments_current_members": "Segment entries come from current members only.",
    "manual_not_simulated": "Manual and API enrolments cannot be replayed.",
    "horizon": "Enrolments whose wait ends after now are shown as waiting.",
    "play_out": "Waits still open now were played to their end as if nothing more happened.",
}


@journeys_app.command("simulate")
def simulate_command(
    path: Annotated[
        Path | None,
        typer.Argument(help="A journey definition (YAML or JSON), saved or not."),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", help="Replay the last this many days of history (1-366).")
    ] = 30,
    key: Annotated[
        str | None, typer.Option("--journey", help="Replay a saved journey instead of a file.")
    ] = None,
    play_out: Annotated[
        bool,
        typer.Option("--play-out", help="Run waits still open now to their end."),
    ] = False,
    now: Annotated[
        str | None,
        typer.Option("--now", help="Replay as if it were this ISO 8601 time (default: now)."),
    ] = None,
) -> None:
    """Dry-run: who would enter, branch and get each email over the last N days. Nothing
    is sent or stored."""
    from ekiden.db.engine import read_connection
    from ekiden.journeys.simulate import simulate

    settings = load_settings()
    locale = settings.default_locale
    if (path is None) == (key is None):
        raise _fail(gettext(locale, "give a definition FILE or --journey KEY (one of them)"))
    clock: Clock = SystemClock()
    if now is not None:
        try:
            moment = datetime.fromisoformat(now)
        except ValueError:
            raise _fail(f"--now must be an ISO 8601 time, not {now!r}") from None
        clock = FrozenClock(moment if moment.tzinfo else moment.replace(tzinfo=settings.zone))
    raw = None
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise _fail(f"cannot read {path}: {exc}") from None
    try:
        with read_connection(create_db_engine(settings.database_url)) as conn:
            found = simulate(
                conn,
                clock,
                settings.zone,
                definition=raw,
                key=key,
                days=days,
                play_out=play_out,
            )
    except EkidenError as exc:
        raise _fail(exc.message) from None
    out = Console()
    out.print(
        gettext(
            locale,
            "Dry-run of %(journey)s over %(days)s days (%(start)s – %(end)s): %(facts)s trigger "
            "facts, %(entered)s contacts would enter (%(enrolments)s enrolments)",
            journey=found.journey,
            days=found.days,
            start=found.start.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M"),
            end=found.end.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M"),
            facts=found.facts,
            entered=found.entered,
            enrolments=found.enrolments,
        ),
        highlight=False,
    )
    nodes = Table(
        *(
            gettext(locale, h)
            for h in ("node", "type", "entered", "passed", "waiting", "exited", "converted")
        ),
        gettext(locale, "email"),
    )
    for n in found.nodes:
        mark = " *" if n.depends_on_email_events else ""
        email = n.email or ""
        if n.capped:
            email += " " + gettext(locale, "(capped %(n)s)", n=n.capped)
        nodes.add_row(
            n.node + mark,
            n.type,
            *(str(v) for v in (n.entered, n.passed, n.waiting, n.exited, n.converted)),
            email,
        )
    out.print(nodes)
    edges = Table(*(gettext(locale, h) for h in ("from", "port", "to", "contacts")))
    for e in found.edges:
        edges.add_row(e.source, e.port, e.target or gettext(locale, "(end)"), str(e.count))
    out.print(edges)
    if found.emails:
        mails = Table(*(gettext(locale, h) for h in ("email", "emails", "contacts")))
        for m in found.emails:
            mails.add_row(m.email, str(m.count), str(m.contacts))
        out.print(mails)
    out.print(
        gettext(
            locale,
            "Skipped: %(reentry)s by the re-entry policy, %(condition)s by the entry condition, "
            "%(limit)s over the limit. Now: completed %(completed)s, exited %(exited)s, "
            "converted %(converted)s, waiting %(waiting)s",
            reentry=found.skipped_reentry,
            condition=found.skipped_condition,
            limit=found.skipped_limit,
            **found.outcomes,
        ),
        highlight=False,
    )
    for code in found.assumptions:
        out.print("- " + gettext(locale, _ASSUMPTIONS[code]), highlight=False)
