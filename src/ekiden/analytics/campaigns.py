"""The campaign and source effectiveness report (definitions: docs/ANALYTICS.md).

Leads are the live contacts created in the period; each is put under its inflow (first-touch
UTM, referrer domain of its first page view, first form, import batch) and followed to the
period end through the lifecycle history. The leads are grouped in the database by all their
inflow keys at once (one query, whatever the number of contacts); each table sums those groups.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    and_,
    case,
    func,
    or_,
    select,
)

from ekiden.analytics.attribution import attribution_table
from ekiden.analytics.costs import DEFAULT_CURRENCY, costs_in_period
from ekiden.analytics.reports import (
    Option,
    Report,
    ReportParams,
    ReportResult,
    ReportTable,
    contact_condition,
    register,
)
from ekiden.clock import Clock
from ekiden.contacts.tables import contacts, imports
from ekiden.i18n import gettext
from ekiden.lifecycle.stages import load_order
from ekiden.lifecycle.tables import stage_history
from ekiden.tracking.tables import events

TOUCH_TYPES = ("page", "form_submitted")
# the inflow keys each lead is grouped by, in the order of the one grouped query
KEYS = ("source", "medium", "campaign", "domain", "form", "batch")


def _currency(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"must be a three-letter currency code (ISO 4217), not {value!r}")
    return code


def prop(table: Any, name: str, key: str | None = None) -> ColumnElement[Any]:
    """Property ``name`` of a table's ``properties`` column as text (or ``key`` of its column
    ``name``), an empty string read as missing."""
    column = table.c.properties[name] if key is None else table.c[name][key]
    return func.nullif(column.as_string(), "")


# scheme://[user@]host[:port]... -> host (PostgreSQL; SQLite calls Python's urlsplit)
_HOST_PATTERN = r"^[a-z][a-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]*)"
SQLITE_HOST_FUNCTION = "ekiden_url_host"


def url_host(url: str | None) -> str | None:
    """The host of ``url``, lower-cased and without ``www.``; None when there is none."""
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return None
    return host.removeprefix("www.") or None


def referrer_domain(conn: Connection, referrer: Any) -> ColumnElement[Any]:
    """SQL: ``url_host`` of the text ``referrer`` (on SQLite through that very function)."""
    if conn.dialect.name == "postgresql":
        found = func.substring(func.lower(referrer), _HOST_PATTERN)
        return func.nullif(func.regexp_replace(found, r"^www\.", ""), "")
    raw = conn.connection.dbapi_connection
    if raw is not None:  # registered on each connection that runs the report
        raw.create_function(SQLITE_HOST_FUNCTION, 1, url_host, deterministic=True)
    host: ColumnElement[Any] = getattr(func, SQLITE_HOST_FUNCTION)(referrer)
    return host


def _first(leads: CTE, end: Any, value: Any, *where: ColumnElement[bool]) -> Any:
    """Per lead: ``value`` of its earliest human event before ``end`` matching ``where`` — one
    range scan of the lead's events on (contact_id, occurred_at), stopping at the first."""
    return (
        select(value)
        .where(
            events.c.contact_id == leads.c.contact_id,
            events.c.machine.is_(False),
            events.c.occurred_at < end,
            *where,
        )
        .order_by(events.c.occurred_at)  # ties: the index's order (SQLite: the first stored)
        .limit(1)
        .scalar_subquery()
    )


class _Leads:
    """The leads of the period with their inflow keys and outcomes, grouped in one query by
    every key at once; each table then sums the groups over its own keys."""

    def __init__(self, conn: Connection, clock: Clock, params: ReportParams, currency: str):
        period = params.period
        end = period.ends_at
        order = load_order(conn, "lifecycle")
        self.won_keys = [s.key for s in order.stages if s.outcome == "won"]
        line = order.line()
        # the stages after the first that are not won: reached = crossed into it or later
        reached = [(i, s.key) for i, s in enumerate(line) if i and s.outcome is None]
        self.columns = ["leads", *(key for _, key in reached), "won", "revenue"]
        who = contact_condition(conn, clock, params.filter, period.zone)
        batch = case((contacts.c.source_kind == "import", contacts.c.source_ref))
        leads = (
            select(contacts.c.id.label("contact_id"), batch.label("batch"))
            .where(who, contacts.c.created_at >= period.starts_at, contacts.c.created_at < end)
            .cte("leads")
        )
        utm = or_(
            prop(events, "utm_source").is_not(None), prop(events, "utm_campaign").is_not(None)
        )
        # computed once per lead (MATERIALIZED), the values read from the first events found
        facts = (
            select(
                leads.c.contact_id,
                leads.c.batch,
                _first(leads, end, events.c.properties, events.c.type.in_(TOUCH_TYPES), utm).label(
                    "touch"
                ),
                _first(
                    leads, end, events.c.properties["referrer"].as_string(), events.c.type == "page"
                ).label("referrer"),
                _first(
                    leads,
                    end,
                    events.c.properties["form"].as_string(),
                    events.c.type == "form_submitted",
                ).label("form"),
            )
            .cte("facts")
            .prefix_with("MATERIALIZED")
        )
        rank = case({s.key: i for i, s in enumerate(line)}, value=stage_history.c.to_stage)
        is_won = stage_history.c.to_stage.in_(self.won_keys)
        deal = and_(is_won, stage_history.c.currency == currency)
        outcomes = (
            select(
                stage_history.c.contact_id,
                func.max(rank).label("top"),
                func.max(case((is_won, 1), else_=0)).label("won"),
                func.sum(case((deal, stage_history.c.deal_value), else_=0)).label("revenue"),
            )
            .where(
                stage_history.c.contact_id.in_(select(leads.c.contact_id)),
                stage_history.c.kind == "lifecycle",
                stage_history.c.moved_at < end,
            )
            .group_by(stage_history.c.contact_id)
            .subquery("outcomes")
        )
        keys = [
            prop(facts, "touch", "utm_source"),
            prop(facts, "touch", "utm_medium"),
            prop(facts, "touch", "utm_campaign"),
            referrer_domain(conn, facts.c.referrer),
            func.nullif(facts.c.form, ""),
            facts.c.batch,
        ]
        labelled = [k.label(name) for k, name in zip(keys, KEYS, strict=True)]
        o = outcomes
        query = (
            select(
                *labelled,
                func.count(),
                *(func.sum(case((o.c.top >= rank, 1), else_=0)) for rank, _ in reached),
                func.sum(func.coalesce(o.c.won, 0)),
                func.sum(func.coalesce(o.c.revenue, 0)),
            )
            .select_from(facts.outerjoin(o, o.c.contact_id == facts.c.contact_id))
            .group_by(*labelled)
        )
        nkeys = len(KEYS)
        self.groups: list[list[Any]] = [
            [*r[:nkeys], *(int(v or 0) for v in r[nkeys:-1]), float(r[-1] or 0)]
            for r in conn.execute(query)
        ]

    def table(self, *names: str) -> list[list[Any]]:
        """Rows of the keys ``names`` followed by the measures, summed over the groups."""
        at = [KEYS.index(n) for n in names]
        summed: dict[tuple[Any, ...], list[Any]] = {}
        for group in self.groups:
            key = tuple(group[i] for i in at)
            measures = group[len(KEYS) :]
            if key in summed:
                summed[key] = [a + b for a, b in zip(summed[key], measures, strict=True)]
            else:
                summed[key] = list(measures)
        rows = [[*key, *m[:-1], round(m[-1], 2)] for key, m in summed.items()]
        return _ordered(rows, len(names))


def _ordered(rows: list[list[Any]], nkeys: int) -> list[list[Any]]:
    """Most leads first, then by the keys (missing ones last)."""
    return sorted(rows, key=lambda r: (-r[nkeys], *((k is None, str(k)) for k in r[:nkeys])))


def _ratio(part: float, whole: float, digits: int = 2) -> float | None:
    return round(part / whole, digits) if whole else None


def run_campaigns(
    conn: Connection, clock: Clock, params: ReportParams, options: dict[str, Any]
) -> ReportResult:
    currency: str = options["currency"]
    leads = _Leads(conn, clock, params, currency)
    measures = leads.columns
    utm_rows = leads.table("source", "medium", "campaign")
    referrer_rows = leads.table("domain")
    form_rows = leads.table("form")
    import_rows = _import_rows(conn, leads.table("batch"))

    shares = costs_in_period(conn, params.period, currency)
    campaign_rows = _campaign_rows(leads.table("campaign"), shares.by_campaign, len(measures))
    attribution, deals = attribution_table(
        conn, clock, params, currency=currency, won_keys=leads.won_keys
    )

    locale = params.locale
    total = sum(r[1] for r in form_rows)
    touched = sum(r[3] for r in utm_rows if any(v is not None for v in r[:3]))
    notes = [
        gettext(
            locale,
            "%(leads)s leads acquired in the period, %(touched)s of them with a UTM first touch",
            leads=total,
            touched=touched,
        ),
        gettext(
            locale,
            "%(deals)s deals won in the period, %(revenue)s %(currency)s in all",
            deals=deals.count,
            revenue=f"{deals.revenue:,.0f}",
            currency=currency,
        ),
    ]
    best = [r for r in campaign_rows if r[-1] is not None]
    if best:
        top = max(best, key=lambda r: r[-1])
        notes.append(
            gettext(
                locale,
                "Best return: campaign %(campaign)s, ROI %(roi)s%%",
                campaign=top[0],
                roi=f"{top[-1]:,.1f}",
            )
        )
    others = sorted(set(deals.other_currencies) | set(shares.other_currencies))
    if others:
        notes.append(
            gettext(
                locale,
                "Amounts in other currencies (%(currencies)s) are not counted; "
                "choose one with the currency option",
                currencies=", ".join(others),
            )
        )

    return ReportResult(
        report="campaigns",
        period_from=params.period.first,
        period_to=params.period.last,
        zone=str(params.period.zone),
        filter=params.filter,
        options=options,
        notes=notes,
        tables=[
            ReportTable(
                name="campaigns",
                columns=[
                    "campaign",
                    *measures,
                    "cost",
                    "cost_per_lead",
                    "cost_per_won",
                    "roi",
                ],
                rows=campaign_rows,
            ),
            ReportTable(
                name="utm", columns=["source", "medium", "campaign", *measures], rows=utm_rows
            ),
            ReportTable(name="referrers", columns=["domain", *measures], rows=referrer_rows),
            ReportTable(name="forms", columns=["form", *measures], rows=form_rows),
            ReportTable(
                name="imports", columns=["import", "filename", *measures], rows=import_rows
            ),
            attribution,
        ],
    )


def _campaign_rows(
    rows: list[list[Any]], costs: dict[str, float], measures: int
) -> list[list[Any]]:
    """Per first-touch campaign (and every campaign with a cost in the period): the measures,
    then cost, cost per lead, cost per won deal and ROI in percent."""
    by_name = {r[0]: r for r in rows}
    for name in costs:
        by_name.setdefault(name, [name, *([0] * (measures - 1)), 0.0])
    out: list[list[Any]] = []
    for name, row in by_name.items():
        leads, won, revenue = row[1], row[-2], row[-1]
        cost = round(costs[name], 2) if name in costs else None
        out.append(
            [
                *row,
                cost,
                None if cost is None else _ratio(cost, leads),
                None if cost is None else _ratio(cost, won),
                round(100 * (revenue - cost) / cost, 1) if cost else None,
            ]
        )
    return _ordered(out, 1)


def _import_rows(conn: Connection, rows: list[list[Any]]) -> list[list[Any]]:
    """Rows keyed by the contacts' source_ref ``import:<id>``: the import id and file name."""
    ids = {
        r[0]: int(r[0].split(":", 1)[1])
        for r in rows
        if isinstance(r[0], str) and r[0].startswith("import:") and r[0][7:].isdigit()
    }
    names: dict[int, str] = {
        r.id: r.filename
        for r in conn.execute(
            select(imports.c.id, imports.c.filename).where(imports.c.id.in_(ids.values()))
        )
    }
    out = [[ids.get(r[0]), names.get(ids.get(r[0], 0)), *r[1:]] for r in rows]
    return _ordered(out, 2)


CAMPAIGNS = register(
    Report(
        name="campaigns",
        description="Campaign and source effectiveness: leads by inflow (UTM, referrer, form, "
        "import), how many reached each stage and were won, revenue, cost per lead and per "
        "won deal, ROI, and won revenue by first-touch, last-touch and linear attribution.",
        options={
            "currency": Option(
                "Currency of the revenue and costs counted (ISO 4217).",
                _currency,
                DEFAULT_CURRENCY,
            ),
        },
        run=run_campaigns,
    )
)
