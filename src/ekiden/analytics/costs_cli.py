"""``ekiden campaigns cost …``: enter, list and delete what campaigns cost."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ekiden.analytics.costs import (
    DEFAULT_CURRENCY,
    CostIn,
    delete_cost,
    list_costs,
    parse_amount,
    set_cost,
)
from ekiden.analytics.reports import parse_day
from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.errors import EkidenError

campaigns_app = typer.Typer(no_args_is_help=True, help="Campaigns: what they cost.")
cost_app = typer.Typer(no_args_is_help=True, help="Campaign costs (cost per lead, ROI).")
campaigns_app.add_typer(cost_app, name="cost")
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


@cost_app.command("set")
def set_command(
    campaign: Annotated[str, typer.Argument(help="The campaign's utm_campaign value.")],
    amount: Annotated[str, typer.Argument(help="What it cost over the days, e.g. 300000.")],
    from_: Annotated[str, typer.Option("--from", help="First day spent, YYYY-MM-DD.")],
    to: Annotated[str, typer.Option("--to", help="Last day spent (included), YYYY-MM-DD.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code.")] = DEFAULT_CURRENCY,
    note: Annotated[str | None, typer.Option(help="A note kept with the cost.")] = None,
) -> None:
    """Set the campaign's cost for the days --from .. --to (replacing the one entered for
    exactly these days, if any)."""
    settings = load_settings()
    try:
        data = CostIn(
            campaign=campaign,
            first_day=parse_day(from_, "--from"),
            last_day=parse_day(to, "--to"),
            amount=parse_amount(amount),
            currency=currency,
            note=note,
        )
        with create_db_engine(settings.database_url).begin() as conn:
            cost, created = set_cost(conn, SystemClock(), data)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'cost'}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(problems) from None
    verb = "created" if created else "replaced"
    err.print(
        f"cost {cost.id} {verb}: {cost.campaign} {cost.amount:,.2f} {cost.currency} "
        f"({cost.first_day} – {cost.last_day})",
        highlight=False,
    )


@cost_app.command("list")
def list_command(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
) -> None:
    """Print the campaign costs entered."""
    settings = load_settings()
    with create_db_engine(settings.database_url).connect() as conn:
        found = list_costs(conn, campaign)
    table = Table("id", "campaign", "from", "to", "amount", "currency", "note")
    for c in found:
        table.add_row(
            str(c.id), c.campaign, str(c.first_day), str(c.last_day), f"{c.amount:,.2f}",
            c.currency, c.note or "",
        )  # fmt: skip
    Console().print(table)


@cost_app.command("delete")
def delete_command(cost_id: Annotated[int, typer.Argument(help="The cost's id.")]) -> None:
    """Delete one campaign cost."""
    settings = load_settings()
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            delete_cost(conn, cost_id)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    err.print(f"cost {cost_id} deleted", highlight=False)
