"""``ekiden contacts ...``: contact commands (merge here; import and export join this group)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from ekiden.clock import SystemClock

contacts_app = typer.Typer(no_args_is_help=True, help="Work with contacts.")
err = Console(stderr=True)


@contacts_app.command("merge")
def merge_command(
    winner: Annotated[int, typer.Argument(help="Id of the contact that stays.")],
    loser: Annotated[int, typer.Argument(help="Id of the contact merged into the winner.")],
) -> None:
    """Merge contact LOSER into WINNER: the winner keeps every event, tag, consent and id."""
    from ekiden.cli import fail, settings_or_exit
    from ekiden.contacts.merge import merge_contacts
    from ekiden.db import create_db_engine
    from ekiden.errors import EkidenError

    engine = create_db_engine(settings_or_exit().database_url)
    try:
        with engine.begin() as conn:
            result = merge_contacts(
                conn, SystemClock(), winner_id=winner, loser_id=loser, merged_by="cli"
            )
    except EkidenError as exc:
        raise fail(exc.message) from None
    finally:
        engine.dispose()
    moved = ", ".join(f"{count} {kind}" for kind, count in sorted(result.moved.items()))
    err.print(f"merged contact {loser} into {winner} (merge {result.merge_id}; moved {moved})")
