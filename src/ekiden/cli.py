"""The ``ekiden`` command. Thin: parses arguments, calls services, prints results."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from ekiden.clock import SystemClock
from ekiden.config import ConfigError, Settings, load_settings
from ekiden.db import create_db_engine
from ekiden.db.migrate import current_revision, head_revision, migrate
from ekiden.errors import EkidenError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ekiden marketing automation.")
apikey_app = typer.Typer(no_args_is_help=True, help="Create and revoke API keys.")
user_app = typer.Typer(no_args_is_help=True, help="Manage users of the admin UI.")
app.add_typer(apikey_app, name="apikey")
app.add_typer(user_app, name="user")

err = Console(stderr=True)


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
) -> None:
    """Serve the HTTP API, tracking endpoints and forms."""
    import uvicorn

    from ekiden.web.app import create_app

    settings = settings_or_exit()
    ensure_schema(settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


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
