"""The web intent report: pages by engagement, and which pages converters visited more than
the others (definitions: docs/ANALYTICS.md)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Select,
    String,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)

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
from ekiden.errors import Invalid
from ekiden.i18n import gettext
from ekiden.lifecycle.stages import load_order
from ekiden.lifecycle.tables import stage_history
from ekiden.tracking.dwell import DWELL_EVENT
from ekiden.tracking.tables import events

DEFAULT_STAGE = "hot"
DEFAULT_LIMIT = 100


def _stage_key(value: str) -> str:
    if not value.strip():
        raise ValueError("must name a stage")
    return value.strip()


def reached_stages(conn: Connection, stage: str, option: str = "stage") -> list[str]:
    """The stage keys whose entry means reaching ``stage``: it and those after it on the
    line (a skip passes it). Invalid naming the option for a stage not on the line."""
    line = [s.key for s in load_order(conn, "lifecycle").line()]
    if stage not in line:
        raise Invalid(
            f"option {option!r}: {stage!r} is not a lifecycle stage on the line; "
            f"stages: {', '.join(line)}",
            code="invalid_option",
            details={"option": option, "value": stage, "known": line},
        )
    return line[line.index(stage) :]


def first_reach(stage_keys: list[str]) -> Select[Any]:
    """Per contact, the first instant it entered one of ``stage_keys``."""
    return (
        select(stage_history.c.contact_id, func.min(stage_history.c.moved_at).label("reached_at"))
        .where(stage_history.c.kind == "lifecycle", stage_history.c.to_stage.in_(stage_keys))
        .group_by(stage_history.c.contact_id)
    )


def _human_in_period(kind: str, params: ReportParams) -> list[ColumnElement[bool]]:
    period = params.period
    return [
        events.c.type == kind,
        events.c.machine == false(),
        events.c.occurred_at >= period.starts_at,
        events.c.occurred_at < period.ends_at,
        events.c.path.is_not(None),
    ]


def _restricted(query: Select[Any], who: ColumnElement[bool] | None) -> Select[Any]:
    if who is None:
        return query
    return query.join(contacts, contacts.c.id == events.c.contact_id).where(who)


def _seconds(ms: Any) -> float | None:
    return None if ms is None else round(float(ms) / 1000, 1)


def _pages(
    conn: Connection, params: ReportParams, who: ColumnElement[bool] | None, limit: int
) -> list[list[Any]]:
    views = _restricted(
        select(
            events.c.path,
            func.count().label("views"),
            func.count(events.c.contact_id.distinct()).label("contacts"),
        ).where(*_human_in_period("page", params)),
        who,
    ).group_by(events.c.path)
    # a page view's dwell time is the sum of its increments (one view: one page_message_id)
    view_key = func.coalesce(
        events.c.properties["page_message_id"].as_string(), cast(events.c.id, String)
    )
    per_view = (
        _restricted(
            select(events.c.path, func.sum(events.c.dwell_ms).label("ms")).where(
                *_human_in_period(DWELL_EVENT, params), events.c.dwell_ms.is_not(None)
            ),
            who,
        )
        .group_by(events.c.path, view_key)
        .subquery()
    )
    ranked = select(
        per_view.c.path,
        per_view.c.ms,
        func.row_number().over(partition_by=per_view.c.path, order_by=per_view.c.ms).label("rn"),
        func.count().over(partition_by=per_view.c.path).label("n"),
    ).subquery()
    middle = or_(
        ranked.c.rn == (ranked.c.n + 1) // literal(2), ranked.c.rn == (ranked.c.n + 2) // 2
    )
    dwell = select(
        ranked.c.path,
        func.count().label("dwell_views"),
        func.sum(ranked.c.ms).label("total_ms"),
        func.avg(case((middle, ranked.c.ms))).label("median_ms"),
    ).group_by(ranked.c.path)
    seen: dict[str, list[Any]] = {}
    for row in conn.execute(views):
        seen[row.path] = [row.path, int(row.views), int(row.contacts), 0, None, None]
    for row in conn.execute(dwell):
        entry = seen.setdefault(row.path, [row.path, 0, 0, 0, None, None])
        entry[3:] = [int(row.dwell_views), _seconds(row.total_ms), _seconds(row.median_ms)]
    ordered = sorted(seen.values(), key=lambda r: (-r[1], -(r[4] or 0), r[0]))
    return ordered[:limit]


def _converters(
    conn: Connection,
    params: ReportParams,
    who: ColumnElement[bool] | None,
    stage_keys: list[str],
) -> tuple[int, int, list[list[Any]]]:
    period = params.period
    start, end = period.starts_at, period.ends_at
    reach = first_reach(stage_keys).subquery()
    converted = and_(reach.c.reached_at.is_not(None), reach.c.reached_at < end)
    flag = cast(case((converted, 1), else_=0), Integer).label("converted")
    visits = (
        _restricted(select(events.c.contact_id, events.c.path, flag), who)
        .outerjoin(reach, reach.c.contact_id == events.c.contact_id)
        .where(
            events.c.contact_id.is_not(None),
            *_human_in_period("page", params),
            # not already past the stage when the period began
            or_(reach.c.reached_at.is_(None), reach.c.reached_at >= start),
            # a converter's visits count before it converted
            or_(~converted, events.c.occurred_at < reach.c.reached_at),
        )
        .distinct()
        .cte("visits")
    )
    # one statement: the visits are computed once for both aggregates
    by_path = select(visits.c.path, visits.c.converted, func.count().label("n")).group_by(
        visits.c.path, visits.c.converted
    )
    by_group = select(
        cast(null(), String).label("path"),
        visits.c.converted,
        func.count(visits.c.contact_id.distinct()).label("n"),
    ).group_by(visits.c.converted)
    groups: dict[int, int] = {}
    paths: dict[str, list[int]] = {}
    for path, flag_value, n in conn.execute(union_all(by_path, by_group)):
        if path is None:
            groups[int(flag_value)] = int(n)
        else:
            paths.setdefault(path, [0, 0])[1 - int(flag_value)] = int(n)
    converters, others = groups.get(1, 0), groups.get(0, 0)
    rows: list[list[Any]] = []
    for path, (conv, other) in paths.items():
        conv_rate = round(100 * conv / converters, 1) if converters else None
        other_rate = round(100 * other / others, 1) if others else None
        lift = (
            round((conv / converters) / (other / others), 2)
            if converters and others and other
            else None
        )
        rows.append([path, conv, conv_rate, other, other_rate, lift])
    rows.sort(key=lambda r: (r[5] is None, -(r[5] or 0), -r[1], r[0]))
    return converters, others, rows


def run_intent(
    conn: Connection, clock: Clock, params: ReportParams, options: dict[str, Any]
) -> ReportResult:
    period = params.period
    stage: str = options["stage"]
    stage_keys = reached_stages(conn, stage)
    live = contact_condition(conn, clock, params.filter, period.zone)
    limit: int = options["limit"]
    # without a filter, every event's contact is a live one (a merge moves the merged-away
    # contact's events, erasing a contact removes them): no join with contacts is needed
    who = live if params.filter is not None else None
    pages = _pages(conn, params, who, limit)
    converters, others, compared = _converters(conn, params, who, stage_keys)
    compared = compared[:limit]
    notes = [
        gettext(
            params.locale,
            "Of %(visitors)s known contacts who visited in the period, %(converters)s reached "
            "the stage %(stage)s in it after visiting",
            visitors=converters + others,
            converters=converters,
            stage=stage,
        )
    ]
    best = next((r for r in compared if r[5] is not None and r[5] > 1), None)
    if best is not None:
        notes.append(
            gettext(
                params.locale,
                "%(path)s was visited by %(rate)s%% of converters against %(other)s%% of the "
                "others (%(lift)s times as often)",
                path=best[0],
                rate=f"{best[2]:g}",
                other=f"{best[4]:g}",
                lift=f"{best[5]:g}",
            )
        )
    else:
        notes.append(
            gettext(params.locale, "No page was visited more by converters than by the others")
        )
    return ReportResult(
        report="intent",
        period_from=period.first,
        period_to=period.last,
        zone=str(period.zone),
        filter=params.filter,
        options=options,
        notes=notes,
        tables=[
            ReportTable(
                name="pages",
                columns=[
                    "path",
                    "views",
                    "contacts",
                    "dwell_views",
                    "dwell_total_s",
                    "dwell_median_s",
                ],
                rows=pages,
            ),
            ReportTable(
                name="converters",
                columns=[
                    "path",
                    "converters",
                    "converters_rate",
                    "others",
                    "others_rate",
                    "lift",
                ],
                rows=compared,
            ),
        ],
    )


INTENT = register(
    Report(
        name="intent",
        description="Web intent: pages by engagement (views, contacts, dwell time) and the "
        "pages converters visited more than the others.",
        options={
            "stage": Option(
                "The lifecycle stage that counts as converting (reaching it or a later one).",
                _stage_key,
                DEFAULT_STAGE,
            ),
            "limit": Option(
                "At most this many rows per table.", whole_number("rows", 1, 10_000), DEFAULT_LIMIT
            ),
        },
        run=run_intent,
    )
)
