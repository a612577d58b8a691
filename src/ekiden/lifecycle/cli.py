"""``ekiden lifecycle …``: show the stage orders; enter every existing contact."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.lifecycle.automatic import contacts_without_stage, enter_first_stages
from ekiden.lifecycle.stages import KINDS, list_stages

lifecycle_app = typer.Typer(no_args_is_help=True, help="Lifecycle and buying stages.")
err = Console(stderr=True)


@lifecycle_app.command("stages")
def stages_command() -> None:
    """Print the lifecycle and buying stages in order."""
    settings = load_settings()
    with create_db_engine(settings.database_url).connect() as conn:
        orders = {kind: list_stages(conn, kind) for kind in KINDS}
    table = Table("kind", "key", "name", "name (en)", "department", "outcome", "skip", "back")
    for kind, found in orders.items():
        for s in found:
            table.add_row(
                kind, s.key, s.name, s.name_en or "", s.department or "", s.outcome or "",
                "yes" if s.allow_skip else "no", "yes" if s.allow_back else "no",
            )  # fmt: skip
    Console().print(table)


@lifecycle_app.command("enter")
def enter_command(
    slice_size: Annotated[
        int, typer.Option(min=1, max=50_000, help="Contacts per transaction.")
    ] = 2000,
) -> None:
    """Put every contact without a stage into the first stages now (the worker otherwise
    does it when it next sees the contact), each entry in the stage history."""
    settings = load_settings()
    engine = create_db_engine(settings.database_url)
    clock = SystemClock()
    last, entered = 0, 0
    while True:
        with engine.begin() as conn:
            ids = contacts_without_stage(conn, after_id=last, limit=slice_size)
            if not ids:
                break
            entered += enter_first_stages(conn, clock, ids)
        last = ids[-1]
        err.print(f"{entered} stage entries written (up to contact {last})", highlight=False)
    err.print(f"done: {entered} stage entries written")
