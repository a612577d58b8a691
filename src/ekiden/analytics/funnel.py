"""The lifecycle funnel report (definitions: docs/ANALYTICS.md)."""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

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
from ekiden.contacts.tables import contacts
from ekiden.i18n import gettext
from ekiden.lifecycle.models import Stage
from ekiden.lifecycle.stages import load_order
from ekiden.lifecycle.tables import stage_history

DEFAULT_STALLED_DAYS = 30


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"must be a whole number of days, not {value!r}") from None
    if number < 1:
        raise ValueError(f"must be at least 1, not {number}")
    return number


def _percent(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"must be a percentage between 0 and 100, not {value!r}") from None
    if not 0 <= number <= 100:
        raise ValueError(f"must be a percentage between 0 and 100, not {value!r}")
    return number


@dataclass
class _Path:
    """One contact's lifecycle history up to the period end, read in order."""

    # line rank -> the instants the contact crossed into that rank from below
    crossings: dict[int, list[datetime]] = field(default_factory=lambda: defaultdict(list))
    # (stage, entered, left or None)
    spells: list[tuple[str, datetime, datetime | None]] = field(default_factory=list)
    entries: list[tuple[str, datetime]] = field(default_factory=list)
    lost: set[str] = field(default_factory=set)


def _paths(rows: list[Any], ranks: dict[str, int], lost: set[str]) -> dict[int, _Path]:
    paths: dict[int, _Path] = {}
    position: dict[int, int] = {}
    for row in rows:
        path = paths.setdefault(row.contact_id, _Path())
        at: datetime = row.moved_at
        if path.spells and path.spells[-1][2] is None:
            stage, since, _ = path.spells[-1]
            path.spells[-1] = (stage, since, at)
        path.spells.append((row.to_stage, at, None))
        path.entries.append((row.to_stage, at))
        if row.to_stage in lost:
            path.lost.add(row.to_stage)
            continue  # beside the line: the place on the line is kept
        rank = ranks.get(row.to_stage)
        if rank is None:
            continue  # a stage removed from the configuration since
        here = position.get(row.contact_id, -1)
        for crossed in range(here + 1, rank + 1):
            path.crossings[crossed].append(at)
        position[row.contact_id] = rank
    return paths


def _conversion(
    paths: dict[int, _Path], a: int, b: int, start: datetime, end: datetime
) -> tuple[int, int]:
    """Of contacts who crossed into rank ``a`` in [start, end), how many crossed into rank
    ``b`` at that moment or later, before ``end``."""
    cohort = converted = 0
    for path in paths.values():
        into_a = path.crossings.get(a)
        if not into_a:
            continue
        i = bisect_left(into_a, start)  # crossings are in time order
        if i == len(into_a) or into_a[i] >= end:
            continue
        cohort += 1
        into_b = path.crossings.get(b)
        if into_b:
            j = bisect_left(into_b, into_a[i])
            if j < len(into_b) and into_b[j] < end:
                converted += 1
    return cohort, converted


def _rate(cohort: int, converted: int) -> float | None:
    return round(100 * converted / cohort, 1) if cohort else None


def _show(rate: float) -> str:
    return f"{rate:g}"


def p90(values: list[float]) -> float:
    """Nearest rank: the ceil(0.9 n)-th smallest, in integers (0.9 * 30 is not 27 in floats)."""
    ordered = sorted(values)
    return ordered[-(-9 * len(ordered) // 10) - 1]


def _days(delta: timedelta) -> float:
    return delta.total_seconds() / 86400


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
    rows = conn.execute(
        select(stage_history.c.contact_id, stage_history.c.to_stage, stage_history.c.moved_at)
        .join(contacts, contacts.c.id == stage_history.c.contact_id)
        .where(who, stage_history.c.kind == "lifecycle", stage_history.c.moved_at < end)
        .order_by(stage_history.c.contact_id, stage_history.c.moved_at, stage_history.c.id)
    ).all()
    paths = _paths(list(rows), ranks, lost)
    stalled_days: int = options["stalled_days"]
    stalled_since = end - timedelta(days=stalled_days)

    in_stage: dict[str, int] = defaultdict(int)
    stalled: dict[str, int] = defaultdict(int)
    entered: dict[str, int] = defaultdict(int)
    durations: dict[str, list[float]] = defaultdict(list)
    for path in paths.values():
        stage, since, _ = path.spells[-1]
        in_stage[stage] += 1
        here = order.get(stage)
        if here is not None and here.outcome is None and since < stalled_since:
            stalled[stage] += 1
        for key in {k for k, t in path.entries if start <= t < end}:
            entered[key] += 1
        for key, began, left in path.spells:
            if left is not None and start <= left < end:
                durations[key].append(_days(left - began))

    stage_rows: list[list[Any]] = []
    for s in order.stages:
        spent = durations.get(s.key, [])
        stage_rows.append(
            [
                s.key,
                _name(s, params.locale),
                in_stage.get(s.key, 0),
                entered.get(s.key, 0),
                len(spent),
                round(statistics.median(spent), 2) if spent else None,
                round(p90(spent), 2) if spent else None,
                stalled.get(s.key, 0) if s.outcome is None else None,
            ]
        )

    conversion_rows: list[list[Any]] = []
    target: float | None = options["target"]
    worst: tuple[float, str] | None = None
    for i in range(len(line) - 1):
        a, b = line[i], line[i + 1]
        cohort, converted = _conversion(paths, i, i + 1, start, end)
        old_cohort, old_converted = _conversion(paths, i, i + 1, before, start)
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
            cohort, converted = _conversion(paths, i, j, start, end)
            reach_rows.append([a.key, line[j].key, cohort, converted, _rate(cohort, converted)])

    cohort_rows = _cohorts(conn, params, who, paths, line, lost, end)
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


def _cohorts(
    conn: Connection,
    params: ReportParams,
    who: Any,
    paths: dict[int, _Path],
    line: list[Stage],
    lost: set[str],
    end: datetime,
) -> list[list[Any]]:
    """Contacts created in the period by month (in the zone) and how many of them reached
    each stage of the line (or were lost) by the period end."""
    period = params.period
    created = conn.execute(
        select(contacts.c.id, contacts.c.created_at).where(
            who, contacts.c.created_at >= period.starts_at, contacts.c.created_at < end
        )
    ).all()
    months: dict[str, list[int]] = defaultdict(list)
    for row in created:
        months[row.created_at.astimezone(period.zone).strftime("%Y-%m")].append(row.id)
    out: list[list[Any]] = []
    for month in sorted(months):
        ids = months[month]
        reached = [
            sum(1 for c in ids if c in paths and paths[c].crossings.get(rank))
            for rank in range(len(line))
        ]
        gone = [sum(1 for c in ids if c in paths and key in paths[c].lost) for key in sorted(lost)]
        out.append([month, len(ids), *reached, *gone])
    return out


FUNNEL = register(
    Report(
        name="funnel",
        description="Lifecycle funnel: stages, conversion, time in stage, stalled leads, "
        "the bottleneck and cohorts by acquisition month.",
        options={
            "stalled_days": Option(
                "Days in one open stage after which a lead counts as stalled.",
                _positive_int,
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
