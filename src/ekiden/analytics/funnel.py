"""The lifecycle funnel report (definitions: docs/ANALYTICS.md)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Select,
    String,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)

from ekiden.analytics.days import day_of, local_day
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
from ekiden.db.schema import UTCDateTime
from ekiden.i18n import gettext
from ekiden.lifecycle.models import Stage
from ekiden.lifecycle.stages import load_order
from ekiden.lifecycle.tables import stage_history

DEFAULT_STALLED_DAYS = 30


def _percent(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a percentage between 0 and 100, not {value!r}") from None
    if not 0 <= number <= 100:
        raise ValueError(f"must be a percentage between 0 and 100, not {value!r}")
    return number


class _History:
    """The selected contacts' lifecycle history up to ``end`` as SQL (CTEs): every row with
    the rank of its stage on the line, each spell (a row and when the next move ended it),
    and every crossing into a stage of the line."""

    def __init__(
        self, who: ColumnElement[bool], end: datetime, ranks: dict[str, int], dialect: str
    ) -> None:
        sh = stage_history
        rank = case(ranks, value=sh.c.to_stage) if ranks else null()
        self.rows = (
            select(
                sh.c.contact_id,
                sh.c.to_stage,
                sh.c.moved_at,
                sh.c.id,
                rank.label("rank"),
            )
            .join(contacts, contacts.c.id == sh.c.contact_id)
            .where(who, sh.c.kind == "lifecycle", sh.c.moved_at < end)
            .cte("history")
        )
        h = self.rows
        order = (h.c.moved_at, h.c.id)
        self.spells = select(
            h.c.contact_id,
            h.c.to_stage,
            h.c.moved_at,
            func.lead(h.c.moved_at, type_=UTCDateTime())
            .over(partition_by=h.c.contact_id, order_by=order)
            .label("left_at"),
        ).cte("spells")
        # the place on the line before each move onto it: the last line stage entered
        on_line = (
            select(
                h.c.contact_id,
                h.c.rank,
                h.c.moved_at,
                func.coalesce(
                    func.lag(h.c.rank).over(partition_by=h.c.contact_id, order_by=order), -1
                ).label("place"),
            )
            .where(h.c.rank.is_not(None))
            .cte("on_line")
        )
        numbers = [select(literal(i).label("r")) for i in range(max(len(ranks), 1))]
        line = union_all(*numbers).cte("line") if len(numbers) > 1 else numbers[0].cte("line")
        # a move from place p to rank k crosses into p+1 .. k (nothing when going back)
        self.crossings = (
            select(on_line.c.contact_id, line.c.r, on_line.c.moved_at.label("at"))
            .join(line, and_(line.c.r > on_line.c.place, line.c.r <= on_line.c.rank))
            .cte("crossings")
        )
        self.dialect = dialect

    def days(self, later: Any, earlier: Any) -> ColumnElement[Any]:
        if self.dialect == "postgresql":
            return extract("epoch", later - earlier) / 86400.0
        return func.julianday(later) - func.julianday(earlier)

    def conversions(self, tag: str, start: datetime, end: datetime) -> list[Select[Any]]:
        """Tagged parts: ``<tag>:cohort`` rank a -> contacts that crossed into a in
        [start, end); ``<tag>:pair`` (a, b) -> of those, how many crossed into b at or after
        their first crossing into a there, before end."""
        x = self.crossings
        first = (
            select(x.c.contact_id, x.c.r, func.min(x.c.at).label("t"))
            .where(x.c.at >= start, x.c.at < end)
            .group_by(x.c.contact_id, x.c.r)
            .cte(f"first_{tag}")
        )
        later = x.alias(f"later_{tag}")
        return [
            _part(f"{tag}:cohort", first.c.r, None, func.count()).group_by(first.c.r),
            _part(f"{tag}:pair", first.c.r, later.c.r, func.count(first.c.contact_id.distinct()))
            .join(
                later,
                and_(
                    later.c.contact_id == first.c.contact_id,
                    later.c.r > first.c.r,
                    later.c.at >= first.c.t,
                    later.c.at < end,
                ),
            )
            .group_by(first.c.r, later.c.r),
        ]


def _part(tag: str, k1: Any, k2: Any, *values: Any) -> Select[Any]:
    """One aggregate of the report's single statement: a tag, two keys and three values,
    typed alike so that every part unites with the others."""
    keys = [cast(k, String) if k is not None else cast(null(), String) for k in (k1, k2)]
    nums = [cast(v, Float) for v in values]
    nums += [cast(null(), Float)] * (3 - len(nums))
    columns: list[Any] = [literal(tag, String).label("tag"), *keys, *nums]
    return select(*columns)


def _rate(cohort: int, converted: int) -> float | None:
    return round(100 * converted / cohort, 1) if cohort else None


def _show(rate: float) -> str:
    return f"{rate:g}"


def p90(values: list[float]) -> float:
    """Nearest rank: the ceil(0.9 n)-th smallest, in integers (0.9 * 30 is not 27 in floats)."""
    ordered = sorted(values)
    return ordered[-(-9 * len(ordered) // 10) - 1]


def _name(stage: Stage, locale: str) -> str:
    return stage.name if locale == "ja" else (stage.name_en or stage.name)


def run_funnel(
    conn: Connection, clock: Clock, params: ReportParams, options: dict[str, Any]
) -> ReportResult:
    period = params.period
    start, end = period.starts_at, period.ends_at
    before = period.previous().starts_at
    order = load_order(conn, "lifecycle")
    line = order.line()
    ranks = {s.key: i for i, s in enumerate(line)}
    lost = {s.key for s in order.stages if s.outcome == "lost"}
    who = contact_condition(conn, clock, params.filter, period.zone)
    history = _History(who, end, ranks, conn.dialect.name)
    stalled_days: int = options["stalled_days"]
    stalled_since = end - timedelta(days=stalled_days)

    sp, h = history.spells, history.rows
    spent = (
        select(sp.c.to_stage, history.days(sp.c.left_at, sp.c.moved_at).label("days"))
        .where(sp.c.left_at >= start, sp.c.left_at < end)
        .subquery()
    )
    ranked = select(
        spent.c.to_stage,
        spent.c.days,
        func.row_number().over(partition_by=spent.c.to_stage, order_by=spent.c.days).label("rn"),
        func.count().over(partition_by=spent.c.to_stage).label("n"),
    ).subquery()
    n, rn = ranked.c.n, ranked.c.rn
    parts = [
        _part(
            "end",
            sp.c.to_stage,
            None,
            func.count(),
            func.count().filter(sp.c.moved_at < stalled_since),
        )
        .where(sp.c.left_at.is_(None))  # the last spell: the stage at the end
        .group_by(sp.c.to_stage),
        _part("entered", h.c.to_stage, None, func.count(h.c.contact_id.distinct()))
        .where(h.c.moved_at >= start)
        .group_by(h.c.to_stage),
        _part(
            "spent",
            ranked.c.to_stage,
            None,
            func.count(),
            func.avg(case((or_(rn == (n + 1) // literal(2), rn == (n + 2) // 2), ranked.c.days))),
            # p90, nearest rank: the ceil(0.9 n)-th shortest
            func.max(case((rn == (9 * n + 9) // literal(10), ranked.c.days))),
        ).group_by(ranked.c.to_stage),
        *history.conversions("now", start, end),
        *history.conversions("then", before, start),
        *_cohort_parts(conn, params, who, history, lost),
    ]
    found: dict[str, dict[tuple[str, str | None], tuple[Any, ...]]] = defaultdict(dict)
    for tag, k1, k2, *values in conn.execute(union_all(*parts)):
        found[tag][k1, k2] = tuple(values)

    def count(tag: str, k1: Any, k2: Any = None) -> int:
        got = found[tag].get((str(k1), None if k2 is None else str(k2)))
        return int(got[0]) if got else 0

    stage_rows: list[list[Any]] = []
    for s in order.stages:
        exits, median, high = found["spent"].get((s.key, None), (0, None, None))
        at_end = found["end"].get((s.key, None), (0, 0, None))
        stage_rows.append(
            [
                s.key,
                _name(s, params.locale),
                int(at_end[0]),
                count("entered", s.key),
                int(exits),
                round(median, 2) if median is not None else None,
                round(high, 2) if high is not None else None,
                int(at_end[1]) if s.outcome is None else None,
            ]
        )

    conversion_rows: list[list[Any]] = []
    target: float | None = options["target"]
    worst: tuple[float, str] | None = None
    for i in range(len(line) - 1):
        a, b = line[i], line[i + 1]
        cohort, converted = count("now:cohort", i), count("now:pair", i, i + 1)
        old_cohort, old_converted = count("then:cohort", i), count("then:pair", i, i + 1)
        rate, old_rate = _rate(cohort, converted), _rate(old_cohort, old_converted)
        change = round(rate - old_rate, 1) if rate is not None and old_rate is not None else None
        conversion_rows.append(
            [a.key, b.key, cohort, converted, rate, old_cohort, old_converted, old_rate, change]
        )
        names = {"from": _name(a, params.locale), "to": _name(b, params.locale)}
        if target is not None and rate is not None and rate < target:
            gap = target - rate
            text = gettext(
                params.locale,
                "%(from)s → %(to)s conversion is %(now)s%%, below the target of %(target)s%%",
                **names,
                now=_show(rate),
                target=_show(target),
            )
        elif target is None and change is not None and change < 0 and old_rate is not None:
            gap = -change
            text = gettext(
                params.locale,
                "%(from)s → %(to)s conversion fell from %(before)s%% to %(now)s%%",
                **names,
                before=_show(old_rate),
                now=_show(rate or 0.0),
            )
        else:
            continue
        if worst is None or gap > worst[0]:
            worst = (gap, text)

    if worst is not None:
        bottleneck = worst[1]
    elif target is not None:
        bottleneck = gettext(
            params.locale, "Every conversion meets the target of %(target)s%%", target=_show(target)
        )
    else:
        bottleneck = gettext(params.locale, "No conversion fell against the previous period")

    reach_rows: list[list[Any]] = []
    for i, a in enumerate(line):
        for j in range(i + 1, len(line)):
            cohort, converted = count("now:cohort", i), count("now:pair", i, j)
            reach_rows.append([a.key, line[j].key, cohort, converted, _rate(cohort, converted)])

    cohort_rows = _cohort_rows(found, line, lost)
    return ReportResult(
        report="funnel",
        period_from=period.first,
        period_to=period.last,
        zone=str(period.zone),
        filter=params.filter,
        options=options,
        notes=[bottleneck],
        tables=[
            ReportTable(
                name="stages",
                columns=[
                    "stage",
                    "name",
                    "contacts_at_end",
                    "entered",
                    "exits",
                    "median_days",
                    "p90_days",
                    "stalled",
                ],
                rows=stage_rows,
            ),
            ReportTable(
                name="conversion",
                columns=[
                    "from",
                    "to",
                    "entered",
                    "converted",
                    "rate",
                    "previous_entered",
                    "previous_converted",
                    "previous_rate",
                    "change",
                ],
                rows=conversion_rows,
            ),
            ReportTable(
                name="reach",
                columns=["from", "to", "entered", "converted", "rate"],
                rows=reach_rows,
            ),
            ReportTable(
                name="cohorts",
                columns=["month", "acquired", *(s.key for s in line), *sorted(lost)],
                rows=cohort_rows,
            ),
        ],
    )


def _cohort_parts(
    conn: Connection,
    params: ReportParams,
    who: ColumnElement[bool],
    history: _History,
    lost: set[str],
) -> list[Select[Any]]:
    """Contacts created in the period by day (in the zone), and by day how many of them
    reached each stage of the line (or were lost) by the period end."""
    period = params.period
    start, end = period.starts_at, period.ends_at
    day = local_day(contacts.c.created_at, period.zone, start, end, conn.dialect.name)
    created = (
        select(contacts.c.id, day.label("day"))
        .where(who, contacts.c.created_at >= start, contacts.c.created_at < end)
        .cte("created")
    )
    x, h = history.crossings, history.rows
    return [
        _part("acquired", created.c.day, None, func.count()).group_by(created.c.day),
        _part("reached", created.c.day, x.c.r, func.count(x.c.contact_id.distinct()))
        .join(x, x.c.contact_id == created.c.id)
        .group_by(created.c.day, x.c.r),
        _part("gone", created.c.day, h.c.to_stage, func.count(h.c.contact_id.distinct()))
        .join(h, h.c.contact_id == created.c.id)
        .where(h.c.to_stage.in_(sorted(lost) or [""]))
        .group_by(created.c.day, h.c.to_stage),
    ]


def _cohort_rows(
    found: dict[str, dict[tuple[str, str | None], tuple[Any, ...]]],
    line: list[Stage],
    lost: set[str],
) -> list[list[Any]]:
    """The cohort parts by acquisition month."""

    def month(number: str) -> str:
        return day_of(int(number)).strftime("%Y-%m")

    sums: dict[tuple[str, str], int] = defaultdict(int)
    acquired: dict[str, int] = defaultdict(int)
    for (d, _), values in found["acquired"].items():
        acquired[month(d)] += int(values[0])
    for tag in ("reached", "gone"):
        for (d, key), values in found[tag].items():
            sums[month(d), str(key)] += int(values[0])
    return [
        [
            m,
            acquired[m],
            *(sums.get((m, str(rank)), 0) for rank in range(len(line))),
            *(sums.get((m, key), 0) for key in sorted(lost)),
        ]
        for m in sorted(acquired)
    ]


FUNNEL = register(
    Report(
        name="funnel",
        description="Lifecycle funnel: stages, conversion, time in stage, stalled leads, "
        "the bottleneck and cohorts by acquisition month.",
        options={
            "stalled_days": Option(
                "Days in one open stage after which a lead counts as stalled.",
                whole_number("days", 1),
                DEFAULT_STALLED_DAYS,
            ),
            "target": Option(
                "Target conversion rate in percent; the bottleneck is then the transition "
                "furthest below it instead of the one that fell most.",
                _percent,
            ),
        },
        run=run_funnel,
    )
)
