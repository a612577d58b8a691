"""The funnel counted in SQL agrees with a from-scratch computation in Python (each contact's
history read in order) on random histories: skips, moves back, lost and reopened, many
periods, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import statistics
from bisect import bisect_left
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert, select

from ekiden.analytics.funnel import p90
from ekiden.analytics.reports import Period, ReportParams, run_report
from ekiden.clock import FrozenClock
from ekiden.contacts.tables import contacts
from ekiden.lifecycle.tables import stage_history

TOKYO = ZoneInfo("Asia/Tokyo")
LINE = ["acquired", "nurturing", "hot", "meeting", "won"]


def _random_history(engine: Engine, seed: int, people: int) -> None:
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for n in range(people):
            created = base + timedelta(minutes=rng.randrange(0, 150 * 24 * 60))
            cid = conn.execute(
                insert(contacts)
                .values(
                    email=f"r{seed}-{n}@example.jp",
                    custom={},
                    created_at=created,
                    updated_at=created,
                )
                .returning(contacts.c.id)
            ).scalar_one()
            rows = [("acquired", created)]
            at, place = created, 0
            for _ in range(rng.randrange(0, 7)):
                at += timedelta(minutes=rng.randrange(1, 40 * 24 * 60))
                roll = rng.random()
                if roll < 0.15:
                    stage = "lost"
                elif roll < 0.3 and place > 0:
                    place = rng.randrange(0, place)  # back
                    stage = LINE[place]
                else:
                    place = min(len(LINE) - 1, place + rng.choice([1, 1, 1, 2, 3]))  # skips
                    stage = LINE[place]
                rows.append((stage, at))
            conn.execute(
                insert(stage_history),
                [
                    {"contact_id": cid, "kind": "lifecycle", "to_stage": s, "moved_at": t,
                     "source": "api"}
                    for s, t in rows
                ],
            )  # fmt: skip


def _reference(engine: Engine, period: Period, stalled_days: int) -> dict[str, Any]:
    """The funnel's definitions computed contact by contact in Python."""
    start, end = period.starts_at, period.ends_at
    before = period.previous().starts_at
    ranks = {k: i for i, k in enumerate(LINE)}
    with engine.connect() as conn:
        rows = conn.execute(
            select(stage_history.c.contact_id, stage_history.c.to_stage, stage_history.c.moved_at)
            .where(stage_history.c.moved_at < end)
            .order_by(stage_history.c.contact_id, stage_history.c.moved_at, stage_history.c.id)
        ).all()
        created = conn.execute(
            select(contacts.c.id, contacts.c.created_at).where(
                contacts.c.created_at >= start, contacts.c.created_at < end
            )
        ).all()
    crossings: dict[int, dict[int, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    spells: dict[int, list[list[Any]]] = defaultdict(list)
    entries: dict[str, set[int]] = defaultdict(set)
    lost: set[int] = set()
    place: dict[int, int] = {}
    for cid, stage, at in rows:
        if spells[cid]:
            spells[cid][-1][2] = at
        spells[cid].append([stage, at, None])
        if start <= at:
            entries[stage].add(cid)
        if stage == "lost":
            lost.add(cid)
            continue
        for r in range(place.get(cid, -1) + 1, ranks[stage] + 1):
            crossings[cid][r].append(at)
        place[cid] = ranks[stage]

    def conversion(a: int, b: int, s: datetime, e: datetime) -> tuple[int, int]:
        cohort = converted = 0
        for per in crossings.values():
            into_a = per.get(a, [])
            i = bisect_left(into_a, s)
            if i == len(into_a) or into_a[i] >= e:
                continue
            cohort += 1
            into_b = per.get(b, [])
            j = bisect_left(into_b, into_a[i])
            converted += j < len(into_b) and into_b[j] < e
        return cohort, converted

    stalled_since = end - timedelta(days=stalled_days)
    stages: dict[str, list[Any]] = {}
    for key in [*LINE, "lost"]:
        spent = [
            (left - began).total_seconds() / 86400
            for per in spells.values()
            for stage, began, left in per
            if stage == key and left is not None and start <= left < end
        ]
        last = [per[-1] for per in spells.values() if per[-1][0] == key]
        stages[key] = [
            len(last),
            len(entries[key]),
            len(spent),
            round(statistics.median(spent), 2) if spent else None,
            round(p90(spent), 2) if spent else None,
            sum(1 for _, since, _ in last if since < stalled_since)
            if key not in ("won", "lost")
            else None,
        ]
    months: dict[str, list[int]] = defaultdict(list)
    for cid, at in created:
        months[at.astimezone(TOKYO).strftime("%Y-%m")].append(cid)
    cohorts = {
        m: [
            len(ids),
            *(sum(1 for c in ids if crossings.get(c, {}).get(r)) for r in range(len(LINE))),
            sum(1 for c in ids if c in lost),
        ]
        for m, ids in months.items()
    }
    return {
        "stages": stages,
        "conversion": {
            (LINE[i], LINE[i + 1]): (
                *conversion(i, i + 1, start, end),
                *conversion(i, i + 1, before, start),
            )
            for i in range(len(LINE) - 1)
        },
        "reach": {
            (LINE[i], LINE[j]): conversion(i, j, start, end)
            for i in range(len(LINE))
            for j in range(i + 1, len(LINE))
        },
        "cohorts": cohorts,
    }


def test_sql_funnel_agrees_with_a_contact_by_contact_computation(engine: Engine) -> None:
    _random_history(engine, seed=7, people=150)
    clock = FrozenClock(datetime(2026, 9, 1, tzinfo=UTC))
    periods = [
        Period(date(2026, 3, 1), date(2026, 3, 31), TOKYO),
        Period(date(2026, 2, 10), date(2026, 5, 20), TOKYO),
        Period(date(2026, 1, 1), date(2026, 12, 31), TOKYO),
        Period(date(2026, 4, 15), date(2026, 4, 15), TOKYO),
    ]
    for period in periods:
        for stalled_days in (7, 30):
            with engine.connect() as conn:
                result = run_report(
                    conn,
                    clock,
                    "funnel",
                    ReportParams(period=period, options={"stalled_days": str(stalled_days)}),
                )
            expected = _reference(engine, period, stalled_days)
            tables = {t.name: t.rows for t in result.tables}
            assert {r[0]: [r[2], r[3], r[4], r[5], r[6], r[7]] for r in tables["stages"]} == (
                expected["stages"]
            ), period
            assert {(r[0], r[1]): (r[2], r[3], r[5], r[6]) for r in tables["conversion"]} == (
                expected["conversion"]
            ), period
            assert {(r[0], r[1]): (r[2], r[3]) for r in tables["reach"]} == expected["reach"]
            assert {r[0]: r[1:] for r in tables["cohorts"]} == expected["cohorts"], period
