"""The active prospects report: known contacts active on the site in the last N days, day by
day, and new known contacts by day and source (definitions: docs/ANALYTICS.md)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, false, func, literal, select

from ekiden.analytics.days import day_number, day_of, local_day
from ekiden.analytics.reports import (
    Option,
    Report,
    ReportParams,
    ReportResult,
    ReportTable,
    contact_condition,
    register,
    whole_number,
)
from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.i18n import gettext
from ekiden.tracking.tables import events

DEFAULT_ACTIVE_DAYS = 30


def source_label(utm: str | None, kind: str | None, ref: str | None) -> str:
    """Where a contact came from: its first UTM source, else the form it filled in, else how
    it became known (import, api, ingest)."""
    if utm:
        return f"utm:{utm}"
    if kind == "form" and ref:
        return f"form:{ref}"
    return kind or "unknown"


def _active(
    conn: Connection, params: ReportParams, who: ColumnElement[bool] | None, window: int
) -> tuple[dict[int, int], dict[int, int]]:
    """(day number -> contacts active in the window ending that day, day -> active that day).
    ``who`` None: every known contact (an event's contact is always a live one: a merge
    moves the merged-away contact's events, erasing a contact removes them)."""
    period = params.period
    since = datetime.combine(period.first - timedelta(days=window - 1), time(), period.zone)
    end = period.ends_at
    day = local_day(events.c.occurred_at, period.zone, since, end, conn.dialect.name)
    pairs = select(events.c.contact_id, day.label("day")).where(
        events.c.type == "page",
        events.c.occurred_at >= since,
        events.c.occurred_at < end,
        events.c.machine == false(),
        events.c.contact_id.is_not(None),
    )
    if who is not None:
        pairs = pairs.join(contacts, contacts.c.id == events.c.contact_id).where(who)
    days = pairs.distinct().subquery()
    nxt = func.lead(days.c.day).over(partition_by=days.c.contact_id, order_by=days.c.day)
    spans = select(days.c.day, nxt.label("nxt")).subquery()
    # each active day covers itself and the window-1 days after it, up to the next active day
    stop = case(
        (spans.c.nxt < spans.c.day + literal(window), spans.c.nxt),
        else_=spans.c.day + literal(window),
    ).label("stop")
    delta: dict[int, int] = defaultdict(int)
    that_day: dict[int, int] = defaultdict(int)
    for d, until, n in conn.execute(
        select(spans.c.day, stop, func.count()).group_by(spans.c.day, stop)
    ):
        delta[int(d)] += int(n)
        delta[int(until)] -= int(n)
        that_day[int(d)] += int(n)
    first, last = day_number(period.first), day_number(period.last)
    active: dict[int, int] = {}
    running = 0
    for number in range(day_number(since.date()), last + 1):
        running += delta.get(number, 0)
        if number >= first:
            active[number] = running
    return active, that_day


def _acquisition(
    conn: Connection, params: ReportParams, who: ColumnElement[bool]
) -> dict[int, Counter[str]]:
    """Day number -> source -> live known contacts (with an email) created that day."""
    period = params.period
    start, end = period.starts_at, period.ends_at
    fresh = (
        select(
            contacts.c.id,
            local_day(contacts.c.created_at, period.zone, start, end, conn.dialect.name).label(
                "day"
            ),
            contacts.c.source_kind,
            contacts.c.source_ref,
        )
        .where(
            who,
            contacts.c.email.is_not(None),
            contacts.c.created_at >= start,
            contacts.c.created_at < end,
        )
        .subquery()
    )
    utm = events.c.properties["utm_source"].as_string()
    touches = (
        select(
            events.c.contact_id,
            utm.label("utm"),
            func.row_number()
            .over(partition_by=events.c.contact_id, order_by=(events.c.occurred_at, events.c.id))
            .label("rn"),
        )
        .join(fresh, fresh.c.id == events.c.contact_id)
        .where(events.c.type == "page", events.c.machine == false(), utm.is_not(None))
        .subquery()
    )
    ref = case((fresh.c.source_kind == "form", fresh.c.source_ref))
    query = (
        select(fresh.c.day, touches.c.utm, fresh.c.source_kind, ref.label("ref"), func.count())
        .select_from(fresh)
        .outerjoin(touches, (touches.c.contact_id == fresh.c.id) & (touches.c.rn == 1))
        .group_by(fresh.c.day, touches.c.utm, fresh.c.source_kind, ref)
    )
    out: dict[int, Counter[str]] = defaultdict(Counter)
    for d, utm_source, kind, form, n in conn.execute(query):
        out[int(d)][source_label(utm_source, kind, form)] += int(n)
    return out


def run_prospects(
    conn: Connection, clock: Clock, params: ReportParams, options: dict[str, Any]
) -> ReportResult:
    period = params.period
    window: int = options["active_days"]
    who = contact_condition(conn, clock, params.filter, period.zone)
    active, that_day = _active(conn, params, who if params.filter is not None else None, window)
    acquired = _acquisition(conn, params, who)
    daily: list[list[Any]] = []
    by_day: list[list[Any]] = []
    totals: Counter[str] = Counter()
    for number in range(day_number(period.first), day_number(period.last) + 1):
        day = day_of(number).isoformat()
        found = acquired.get(number, Counter())
        daily.append([day, active[number], that_day.get(number, 0), sum(found.values())])
        for source in sorted(found):
            by_day.append([day, source, found[source]])
        totals.update(found)
    total = sum(totals.values())
    sources = [
        [source, n, round(100 * n / total, 1)]
        for source, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    notes = [
        gettext(
            params.locale,
            "On %(day)s, %(active)s known contacts had visited the site in the last %(days)s "
            "days (%(first)s on %(first_day)s)",
            day=period.last.isoformat(),
            active=daily[-1][1],
            days=window,
            first=daily[0][1],
            first_day=period.first.isoformat(),
        ),
        gettext(params.locale, "%(count)s new known contacts in the period", count=total)
        if not sources
        else gettext(
            params.locale,
            "%(count)s new known contacts in the period, most from %(source)s (%(share)s%%)",
            count=total,
            source=sources[0][0],
            share=f"{sources[0][2]:g}",
        ),
    ]
    return ReportResult(
        report="prospects",
        period_from=period.first,
        period_to=period.last,
        zone=str(period.zone),
        filter=params.filter,
        options=options,
        notes=notes,
        tables=[
            ReportTable(
                name="daily",
                columns=["day", "active", "visited", "new_contacts"],
                rows=daily,
            ),
            ReportTable(name="sources", columns=["source", "new_contacts", "share"], rows=sources),
            ReportTable(name="acquisition", columns=["day", "source", "new_contacts"], rows=by_day),
        ],
    )


PROSPECTS = register(
    Report(
        name="prospects",
        description="Active prospects: known contacts active on the site in the last N days, "
        "day by day, and new known contacts by day and source.",
        options={
            "active_days": Option(
                "A contact is active on a day when it viewed a page in the N days ending then.",
                whole_number("days", 1, 366),
                DEFAULT_ACTIVE_DAYS,
            )
        },
        run=run_prospects,
    )
)
