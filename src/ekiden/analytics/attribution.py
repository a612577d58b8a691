"""Attribution of won revenue to campaigns: first touch, last touch and linear.

A deal is a move into a won stage in the period (its value the deal value recorded with the
move). Its touches are the contact's human page views and form submissions carrying a
``utm_campaign``, and its human email clicks (campaign: the send key, else the template key,
as the links' ``utm_campaign``), before the won moment. First touch gives the whole value to
the earliest touch's campaign, last touch to the latest's, linear splits it evenly over all
touches. Deals without touches are shown under no campaign, so each model's column adds up to
the revenue won in the period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Float, case, cast, func, or_, select

from ekiden.analytics.reports import ReportParams, ReportTable, contact_condition
from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.lifecycle.tables import stage_history
from ekiden.tracking.tables import events


@dataclass(frozen=True)
class Deals:
    count: int
    revenue: float
    other_currencies: list[str]


def _prop(name: str) -> Any:
    return func.nullif(events.c.properties[name].as_string(), "")


def attribution_table(
    conn: Connection,
    clock: Clock,
    params: ReportParams,
    *,
    currency: str,
    won_keys: Sequence[str],
) -> tuple[ReportTable, Deals]:
    period = params.period
    who = contact_condition(conn, clock, params.filter, period.zone)
    won_in_period = (
        select(stage_history.c.id, stage_history.c.contact_id, stage_history.c.moved_at,
               stage_history.c.deal_value, stage_history.c.currency)
        .join(contacts, contacts.c.id == stage_history.c.contact_id)
        .where(
            who,
            stage_history.c.kind == "lifecycle",
            stage_history.c.to_stage.in_(list(won_keys)),
            stage_history.c.moved_at >= period.starts_at,
            stage_history.c.moved_at < period.ends_at,
        )
    )  # fmt: skip
    others = _other_currencies(conn, won_in_period, currency)
    counted = won_in_period.where(
        or_(stage_history.c.currency.is_(None), stage_history.c.currency == currency)
    ).subquery()
    deals = select(
        counted.c.id.label("deal_id"),
        counted.c.contact_id,
        counted.c.moved_at.label("won_at"),
        func.coalesce(counted.c.deal_value, 0).label("value"),
    ).cte("deals")
    total_count, total_value = conn.execute(
        select(func.count(), func.coalesce(func.sum(deals.c.value), 0))
    ).one()

    campaign = case(
        (events.c.type == "email_clicked",
         func.coalesce(_prop("send"), _prop("email"))),
        else_=_prop("utm_campaign"),
    )  # fmt: skip
    touches = (
        select(
            deals.c.deal_id,
            deals.c.value,
            campaign.label("campaign"),
            func.row_number()
            .over(partition_by=deals.c.deal_id, order_by=(events.c.occurred_at, events.c.id))
            .label("first"),
            func.row_number()
            .over(
                partition_by=deals.c.deal_id,
                order_by=(events.c.occurred_at.desc(), events.c.id.desc()),
            )
            .label("last"),
            func.count().over(partition_by=deals.c.deal_id).label("n"),
        )
        .select_from(deals.join(events, events.c.contact_id == deals.c.contact_id))
        .where(
            events.c.type.in_(("page", "form_submitted", "email_clicked")),
            events.c.machine.is_(False),
            events.c.occurred_at < deals.c.won_at,
            campaign.is_not(None),
        )
        .subquery("touches")
    )
    value = cast(touches.c.value, Float)
    rows = conn.execute(
        select(
            touches.c.campaign,
            func.count(func.distinct(touches.c.deal_id)),
            func.count(),
            func.sum(case((touches.c.first == 1, value), else_=0.0)),
            func.sum(case((touches.c.last == 1, value), else_=0.0)),
            func.sum(value / touches.c.n),
        ).group_by(touches.c.campaign)
    ).all()
    table_rows = [
        [name, int(n_deals), int(n_touches), round(float(f), 2), round(float(la), 2),
         round(float(li), 2)]
        for name, n_deals, n_touches, f, la, li in rows
    ]  # fmt: skip
    touched_count, touched_value = conn.execute(
        select(func.count(), func.coalesce(func.sum(value), 0.0)).where(touches.c.first == 1)
    ).one()
    untouched = int(total_count) - int(touched_count)
    if untouched:
        rest = round(float(total_value) - float(touched_value), 2)
        table_rows.append([None, untouched, 0, rest, rest, rest])
    table_rows.sort(key=lambda r: (-r[5], r[0] is None, str(r[0])))
    table = ReportTable(
        name="attribution",
        columns=["campaign", "deals", "touches", "first_touch", "last_touch", "linear"],
        rows=table_rows,
    )
    return table, Deals(int(total_count), round(float(total_value), 2), others)


def _other_currencies(conn: Connection, won: Any, currency: str) -> list[str]:
    found = won.subquery()
    return sorted(
        conn.execute(
            select(found.c.currency)
            .where(found.c.currency.is_not(None), found.c.currency != currency)
            .distinct()
        ).scalars()
    )
