"""Campaign costs entered by the user, and the share of each that falls in a report period.

A cost is an amount spent on one campaign (its ``utm_campaign`` value) over a span of days.
Reports spread it evenly over those days: a period covering 10 of its 31 days gets 10/31 of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ekiden.analytics.costs_tables import campaign_costs
from ekiden.analytics.reports import Period
from ekiden.clock import Clock
from ekiden.errors import Conflict, Invalid, NotFound

DEFAULT_CURRENCY = "JPY"
MAX_AMOUNT = 1e15


def parse_amount(text: str) -> float:
    """An amount written by a person ("300000", "1,200.50"); Invalid naming the value when it
    is not a finite number of at least 0."""
    try:
        value = float(text.replace(",", "").strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= MAX_AMOUNT:
        raise Invalid(
            f"the cost must be a number between 0 and {MAX_AMOUNT:.0f}, not {text!r}",
            code="invalid_amount",
            details={"amount": text},
        )
    return round(value, 2)


class CostIn(BaseModel):
    """A campaign's cost over the days ``first_day`` .. ``last_day`` (both included)."""

    model_config = ConfigDict(extra="forbid")

    campaign: str = Field(min_length=1, max_length=200, description="the utm_campaign value")
    first_day: date
    last_day: date
    amount: float = Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True)
    currency: str = Field(DEFAULT_CURRENCY, pattern=r"^[A-Z]{3}$", description="ISO 4217")
    note: str | None = Field(None, max_length=2000)

    @field_validator("amount", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        # a JSON number only: "300000" (a string) or true is not an amount
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"the cost must be a number, not {value!r}")
        return float(value)

    @field_validator("campaign")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("the campaign must not start or end with spaces")
        return value

    @model_validator(mode="after")
    def _span(self) -> CostIn:
        if self.last_day < self.first_day:
            raise ValueError(f"last_day ({self.last_day}) is before first_day ({self.first_day})")
        return self


class Cost(CostIn):
    id: int
    created_at: datetime
    updated_at: datetime


def _cost(row: Any) -> Cost:
    return Cost.model_validate(dict(row._mapping))


def _not_found(cost_id: int) -> NotFound:
    return NotFound(f"no campaign cost with id {cost_id}", details={"id": cost_id})


def _taken(data: CostIn) -> Conflict:
    return Conflict(
        f"campaign {data.campaign!r} already has a cost for {data.first_day} – {data.last_day}",
        code="cost_exists",
        details={"campaign": data.campaign},
    )


def list_costs(conn: Connection, campaign: str | None = None) -> list[Cost]:
    query = select(campaign_costs)
    if campaign is not None:
        query = query.where(campaign_costs.c.campaign == campaign)
    rows = conn.execute(
        query.order_by(campaign_costs.c.campaign, campaign_costs.c.first_day, campaign_costs.c.id)
    )
    return [_cost(r) for r in rows]


def get_cost(conn: Connection, cost_id: int) -> Cost:
    row = conn.execute(select(campaign_costs).where(campaign_costs.c.id == cost_id)).first()
    if row is None:
        raise _not_found(cost_id)
    return _cost(row)


def create_cost(conn: Connection, clock: Clock, data: CostIn) -> Cost:
    """A new cost; Conflict when the campaign already has one for exactly these days."""
    now = clock.now()
    try:
        with conn.begin_nested():
            new_id = conn.execute(
                insert(campaign_costs)
                .values(**data.model_dump(), created_at=now, updated_at=now)
                .returning(campaign_costs.c.id)
            ).scalar_one()
    except IntegrityError:
        raise _taken(data) from None
    return get_cost(conn, int(new_id))


def replace_cost(conn: Connection, clock: Clock, cost_id: int, data: CostIn) -> Cost:
    get_cost(conn, cost_id)
    try:
        with conn.begin_nested():
            conn.execute(
                update(campaign_costs)
                .where(campaign_costs.c.id == cost_id)
                .values(**data.model_dump(), updated_at=clock.now())
            )
    except IntegrityError:
        raise _taken(data) from None
    return get_cost(conn, cost_id)


def set_cost(conn: Connection, clock: Clock, data: CostIn) -> tuple[Cost, bool]:
    """Create the campaign's cost for these days, or replace the one there is; (cost, created)."""
    existing = conn.execute(
        select(campaign_costs.c.id).where(
            campaign_costs.c.campaign == data.campaign,
            campaign_costs.c.first_day == data.first_day,
            campaign_costs.c.last_day == data.last_day,
        )
    ).scalar_one_or_none()
    if existing is None:
        return create_cost(conn, clock, data), True
    return replace_cost(conn, clock, int(existing), data), False


def delete_cost(conn: Connection, cost_id: int) -> None:
    if not conn.execute(delete(campaign_costs).where(campaign_costs.c.id == cost_id)).rowcount:
        raise _not_found(cost_id)


@dataclass(frozen=True)
class CostShares:
    """Costs falling in a period: per campaign in the report currency, and how many cost
    entries in other currencies were left out."""

    by_campaign: dict[str, float]
    other_currencies: list[str]


def costs_in_period(conn: Connection, period: Period, currency: str) -> CostShares:
    """Each campaign's costs spread evenly over their days, the days in ``period`` taken."""
    rows = conn.execute(
        select(campaign_costs).where(
            campaign_costs.c.first_day <= period.last,
            campaign_costs.c.last_day >= period.first,
        )
    ).all()
    shares: dict[str, float] = {}
    others: set[str] = set()
    for row in rows:
        if row.currency != currency:
            others.add(row.currency)
            continue
        span = (row.last_day - row.first_day).days + 1
        inside = (min(row.last_day, period.last) - max(row.first_day, period.first)).days + 1
        shares[row.campaign] = shares.get(row.campaign, 0.0) + float(row.amount) * inside / span
    return CostShares(shares, sorted(others))
