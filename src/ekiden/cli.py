"""The ``ekiden`` command. Thin: parses arguments, calls services, prints results."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from ekiden.analytics.cli import report_command
from ekiden.analytics.costs_cli import campaigns_app
from ekiden.bench.cli import bench_app
from ekiden.clock import SystemClock
from ekiden.config import ConfigError, Settings, load_settings
from ekiden.contacts.cli import contacts_app
from ekiden.contacts.cli_io import export_app, import_app
from ekiden.db import create_db_engine
from ekiden.db.migrate import current_revision, head_revision, migrate
from ekiden.errors import EkidenError
from ekiden.journeys.cli import journeys_app
from ekiden.lifecycle.cli import lifecycle_app
from ekiden.messaging.topics_cli import emails_app
from ekiden.outbox.cli import bounces_app, outbox_app
from ekiden.predictive.cli import model_app
from ekiden.scoring.cli import scores_app
from ekiden.segments.cli import segments_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ekiden marketing automation.")
apikey_app = typer.Typer(no_args_is_help=True, help="Create and revoke API keys.")
user_app = typer.Typer(no_args_is_help=True, help="Manage users of the admin UI.")
app.add_typer(apikey_app, name="apikey")
app.add_typer(user_app, name="user")
app.add_typer(segments_app, name="segments")
app.add_typer(journeys_app, name="journeys")
app.add_typer(scores_app, name="scores")
app.add_typer(lifecycle_app, name="lifecycle")
app.add_typer(contacts_app, name="contacts")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
app.add_typer(bench_app, name="bench")
app.add_typer(model_app, name="model")
app.add_typer(bounces_app, name="bounces")
app.add_typer(outbox_app, name="outbox")
app.add_typer(emails_app, name="emails")
app.command("report")(report_command)
app.add_typer(campaigns_app, name="campaigns")

err = Console(stderr=True)


@app.callback()
def _command_scope(ctx: typer.Context) -> None:
    """Close the database connections a command opened when it ends, however it ends."""
    from ekiden.db.engine import live_engines

    before = live_engines()

    def dispose_new_engines() -> None:
        for engine in live_engines() - before:
            engine.dispose()

    ctx.call_on_close(dispose_new_engines)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


@app.command("migrate")
def migrate_command() -> None:
    """Apply database migrations up to the newest schema."""
    settings = settings_or_exit()
    engine = create_db_engine(settings.database_url)
    before, after = migrate(engine)
    if before == after:
        err.print(f"database is up to date (revision {after})")
    else:
        err.print(f"migrated database from {before or 'empty'} to {after}")


def ensure_schema(settings: Settings) -> None:
    """Migrate an empty database; refuse to run against one that is behind."""
    engine = create_db_engine(settings.database_url)
    current = current_revision(engine)
    if current is None:
        migrate(engine)
        err.print("created the database schema")
    elif current != head_revision(engine):
        raise fail(f"the database schema is at {current}; run `ekiden migrate` first")
    engine.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes. Each takes requests on the same port; on SQLite their "
            "ingestion writes still go one at a time.",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API, tracking endpoints and forms."""
    import uvicorn

    from ekiden.web.app import create_app, prepare_to_serve

    settings = settings_or_exit()
    ensure_schema(settings)
    if workers > 1:
        # uvicorn's own command runs the processes; each builds its app from the same
        # environment (this process is replaced, so signals reach uvicorn directly)
        command = [
            sys.executable, "-m", "uvicorn", "ekiden.web.server:create", "--factory",
            "--workers", str(workers), "--host", host, "--port", str(port),
        ]  # fmt: skip
        os.execv(sys.executable, command)  # noqa: S606
    web = prepare_to_serve(create_app(settings))
    uvicorn.run(web, host=host, port=port, log_level="info")


@app.command()
def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Do everything that is due, then exit.")
    ] = False,
    now: Annotated[
        str | None,
        typer.Option(help="With --once: act as if it were this ISO 8601 time (a dry run of time)."),
    ] = None,
) -> None:
    """Run the background worker: segment membership and other scheduled work."""
    import logging
    import threading
    from datetime import datetime

    from ekiden.clock import Clock, FrozenClock
    from ekiden.worker import Worker, wait_until_idle

    settings = settings_or_exit()
    ensure_schema(settings)
    clock: Clock = SystemClock()
    if now is not None:
        if not once:
            raise fail("--now only goes with --once")
        try:
            moment = datetime.fromisoformat(now)
        except ValueError:
            raise fail(f"--now must be an ISO 8601 time, not {now!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=settings.zone)
        clock = FrozenClock(moment)
    runner = Worker(create_db_engine(settings.database_url), clock, settings)
    if once:
        # Everything due up to that moment, including work that earlier steps made due.
        report = wait_until_idle(runner, timeout=float("inf"))
        done = ", ".join(f"{name} {count}" for name, count in report.periodic.items() if count)
        err.print(
            f"refreshed {report.contacts_refreshed} contacts, rebuilt "
            f"{report.segments_rebuilt} segments (+{report.entered} / -{report.exited})"
            + (f"; {done}" if done else "")
        )
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    try:
        runner.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve HTTP and run the worker in one process (small installations, the demo)."""
    import uvicorn

    from ekiden.web.app import create_app, prepare_to_serve
    from ekiden.worker import Worker, start_in_thread

    settings = settings_or_exit()
    ensure_schema(settings)
    clock = SystemClock()
    web = prepare_to_serve(create_app(settings, clock=clock))
    _, stop = start_in_thread(Worker(create_db_engine(settings.database_url), clock, settings))
    try:
        uvicorn.run(web, host=host, port=port, log_level="info")
    finally:
        stop.set()


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    visitors: Annotated[int, typer.Option(min=10, help="Simulated website visitors.")] = 300,
    weeks: Annotated[int, typer.Option(min=1, max=52, help="Weeks of simulated traffic.")] = 8,
    build_only: Annotated[
        bool, typer.Option("--build-only", help="Build the demo data, then exit.")
    ] = False,
) -> None:
    """Build a realistic demo on the embedded database (once) and serve it with the worker.

    Uses EKIDEN_DATABASE_URL when set, otherwise the SQLite file ekiden-demo.db.
    """
    import uvicorn

    from ekiden.demo.run import announce, build, is_built, keys
    from ekiden.demo.site import demo_router
    from ekiden.web.app import create_app, prepare_to_serve
    from ekiden.worker import Worker, start_in_thread

    overrides = (
        {}
        if os.environ.get("EKIDEN_DATABASE_URL")
        else {"database_url": "sqlite:///ekiden-demo.db"}
    )
    try:
        settings = load_settings(base_url=f"http://{host}:{port}", **overrides)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    ensure_schema(settings)
    engine = create_db_engine(settings.database_url)
    if not is_built(engine):
        build(engine, settings, visitors=visitors, weeks=weeks)
    else:
        err.print("the demo data exists already; delete ekiden-demo.db to build it anew")
    admin_key, ingest_key = keys(engine)
    if build_only:
        sys.stdout.write(f"admin key: {admin_key}\ningest key: {ingest_key}\n")
        return
    clock = SystemClock()
    web = create_app(settings, engine=engine, clock=clock)
    web.include_router(demo_router(ingest_key))
    prepare_to_serve(web)
    _, stop = start_in_thread(Worker(engine, clock, settings))
    announce(settings, host, port, admin_key, ingest_key)
    try:
        uvicorn.run(web, host=host, port=port, log_level="warning")
    finally:
        stop.set()


@apikey_app.command("create")
def apikey_create(
    scope: Annotated[str, typer.Option(help="ingest (write events only) or admin.")],
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
) -> None:
    """Create an API key and print it (only this once) on stdout."""
    from ekiden.auth.keys import create_key

    settings = settings_or_exit()
    engine = create_db_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            key = create_key(conn, SystemClock(), scope=scope, name=name)
    except EkidenError as exc:
        raise fail(exc.message) from None
    sys.stdout.write(key + "\n")


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Login email.")],
    role: Annotated[str, typer.Option(help="admin, marketer, sales or analyst.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Password."),
    ] = "",
) -> None:
    """Create a user of the admin UI (also an owner for contacts)."""
    from ekiden.auth.users import create_user

    settings = settings_or_exit()
    engine = create_db_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            user = create_user(
                conn, SystemClock(), email=email, password=password, role=role, name=name
            )
    except EkidenError as exc:
        raise fail(exc.message) from None
    err.print(f"created user {user.id} <{user.email}> with role {user.role}")


def main() -> None:
    app()
