"""Entry triggers, and waking waiting enrolments when their contact changes.

Events are not tailed by a cursor over event ids (on PostgreSQL rows commit out of order, so
a cursor skips some). Instead the worker's contact step — called with the contacts whose data
or behaviour changed, in the transaction that claimed them — looks at those contacts' own
events of the trigger types received since the journey was activated, and enrols them:
per-row state (the dirty-contact queue) rather than a position in the log. What already
happened is told apart by the enrolments themselves: an event that enrolled a contact is its
enrolment's trigger, and after an exit only events received later count. Stage triggers are
``stage_changed`` events; score triggers read the contact's score history the same way.

Segment entries are read from the stored membership (``segment_members.entered_at``), and date
triggers are a filter over the contacts' date fields, both by the periodic step.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, and_, exists, or_, select, update

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.tables import contacts
from ekiden.journeys import definition as d
from ekiden.journeys.engine import run_due
from ekiden.journeys.models import LIVE_STATES
from ekiden.journeys.service import definition_of, enrol_contacts
from ekiden.journeys.tables import enrolments, journeys
from ekiden.rules.fields import Catalog, load_catalog
from ekiden.rules.memory import ContactData, Env, EventData, evaluate
from ekiden.rules.model import All, EventCondition, parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter
from ekiden.segments.tables import segment_members, segments
from ekiden.tracking.tables import events

UTC_ZONE = ZoneInfo("UTC")


def _active(conn: Connection) -> list[tuple[Any, d.Journey]]:
    rows = conn.execute(select(journeys).where(journeys.c.status == "active")).all()
    return [(r, definition_of(conn, r.id, r.version)) for r in rows]


def wake_waiting(conn: Connection, clock: Clock, contact_ids: Sequence[int]) -> int:
    """Make the waiting enrolments of these contacts due now, so that a wait_for, goal or
    exit criterion sees the change at once. Rows another worker is running are skipped (it
    reads the change itself, or the wait's deadline does)."""
    now = clock.now()
    picked = select(enrolments.c.id).where(
        enrolments.c.contact_id.in_(list(contact_ids)),
        enrolments.c.state == "waiting",
        enrolments.c.due_at > now,
    )
    if conn.dialect.name == "postgresql":
        picked = picked.with_for_update(skip_locked=True)
    ids = list(conn.execute(picked).scalars())
    if ids:
        conn.execute(update(enrolments).where(enrolments.c.id.in_(ids)).values(due_at=now))
    return len(ids)


def event_matches(trigger: d.EventTrigger, row: Any) -> bool:
    event = EventData(
        type=row.type,
        occurred_at=row.occurred_at,
        path=row.path,
        name=row.name,
        dwell_ms=row.dwell_ms,
        properties=row.properties or {},
        machine=bool(row.machine),
    )
    cond = EventCondition(
        event=trigger.event, where=trigger.where, include_machine=trigger.include_machine
    )
    env = Env(catalog=Catalog(custom={}), now=row.occurred_at, zone=UTC_ZONE)
    return evaluate(cond, ContactData(fields={}, events=[event]), env)


@dataclass(frozen=True)
class _Fact:
    """Something that happened to a contact that may enrol it: ``key`` names it for good
    (an enrolment it caused carries it as its trigger)."""

    contact_id: int
    key: str
    at: datetime  # when it was recorded


def stage_trigger(trigger: d.StageTrigger) -> d.EventTrigger:
    """A stage reached is a ``stage_changed`` event (recorded by lifecycle) to that stage."""
    return d.EventTrigger.model_validate(
        {
            "event": "stage_changed",
            "where": [{"property": "to", "op": "eq", "value": trigger.stage_reached}],
            "include_machine": True,
        }
    )


def _event_facts(
    conn: Connection, journey: d.Journey, since: datetime, ids: list[int]
) -> list[_Fact]:
    triggers = [t for t in journey.entry.triggers if isinstance(t, d.EventTrigger)]
    triggers += [stage_trigger(t) for t in journey.entry.triggers if isinstance(t, d.StageTrigger)]
    if not triggers:
        return []
    found = conn.execute(
        select(events)
        .where(
            events.c.contact_id.in_(ids),
            events.c.type.in_(sorted({t.event for t in triggers})),
            events.c.received_at >= since,
        )
        .order_by(events.c.id)
    ).all()
    return [
        _Fact(e.contact_id, f"event:{e.id}", e.received_at)
        for e in found
        if any(event_matches(t, e) for t in triggers)
    ]


def _score_facts(
    conn: Connection, journey: d.Journey, since: datetime, ids: list[int]
) -> list[_Fact]:
    """Score changes that rose from below the threshold to at least it."""
    from ekiden.scoring.service import history

    out: list[_Fact] = []
    for trigger in journey.entry.triggers:
        if not isinstance(trigger, d.ScoreTrigger):
            continue
        for contact_id in ids:
            for change in history(conn, contact_id, score_key=trigger.score_crossed, limit=20):
                if change.changed_at < since:
                    break
                if change.previous < trigger.at_least <= change.value:
                    out.append(_Fact(contact_id, f"score:{change.id}", change.changed_at))
    return sorted(out, key=lambda f: f.at)


def enrol_from_events(
    conn: Connection, clock: Clock, settings: Settings, contact_ids: Sequence[int]
) -> int:
    """Enrol these contacts in active journeys whose event, stage or score triggers match
    what newly happened to them; returns how many enrolments were made."""
    made = 0
    ids = sorted(set(contact_ids))
    kinds = (d.EventTrigger, d.StageTrigger, d.ScoreTrigger)
    for row, journey in _active(conn):
        if row.activated_at is None or not any(
            isinstance(t, kinds) for t in journey.entry.triggers
        ):
            continue
        past = conn.execute(
            select(
                enrolments.c.contact_id,
                enrolments.c.trigger,
                enrolments.c.state,
                enrolments.c.ended_at,
            ).where(enrolments.c.journey_id == row.id, enrolments.c.contact_id.in_(ids))
        ).all()
        used = {p.trigger for p in past}
        live = {p.contact_id for p in past if p.state in LIVE_STATES}
        ever = {p.contact_id for p in past}
        last_end: dict[int, datetime] = {}
        for p in past:
            if p.ended_at is not None:
                last_end[p.contact_id] = max(p.ended_at, last_end.get(p.contact_id, p.ended_at))
        reentry = journey.entry.reentry
        # contacts the policy keeps out whatever happened: no need to read their history
        barred = ever if reentry == "never" else live if reentry == "after_exit" else set()
        open_ids = [i for i in ids if i not in barred]
        if not open_ids:
            continue
        facts = _event_facts(conn, journey, row.activated_at, open_ids)
        facts += _score_facts(conn, journey, row.activated_at, open_ids)
        for fact in facts:
            contact_id = fact.contact_id
            if fact.key in used:
                continue
            if reentry == "never" and contact_id in ever:
                continue
            if reentry == "after_exit" and (
                contact_id in live or (contact_id in last_end and fact.at <= last_end[contact_id])
            ):
                continue
            enrolled, _ = enrol_contacts(
                conn,
                clock,
                row.key,
                [contact_id],
                zone=settings.zone,
                trigger=fact.key,
                require_active=False,
            )
            if enrolled:
                made += 1
                ever.add(contact_id)
                live.add(contact_id)
    return made


def journeys_contact_step(
    conn: Connection, clock: Clock, settings: Settings, contact_ids: Sequence[int]
) -> None:
    """The worker's contact step: wake waiting enrolments, then enrol from new events."""
    wake_waiting(conn, clock, contact_ids)
    enrol_from_events(conn, clock, settings, contact_ids)


def enrol_from_segments(conn: Connection, clock: Clock, settings: Settings) -> int:
    """Enrol contacts that entered a trigger segment since the journey was activated and
    have no enrolment that already answers that entry (per the re-entry policy)."""
    made = 0
    for row, journey in _active(conn):
        triggers = [t for t in journey.entry.triggers if isinstance(t, d.SegmentTrigger)]
        if not triggers or row.activated_at is None:
            continue
        slugs = [t.segment_entered for t in triggers]
        seg_ids = dict(
            conn.execute(
                select(segments.c.id, segments.c.slug).where(
                    segments.c.slug.in_(slugs), segments.c.archived_at.is_(None)
                )
            ).all()
        )
        for seg_id in seg_ids:
            trigger = f"segment:{seg_id}"
            m = segment_members
            e = enrolments
            if journey.entry.reentry == "never":
                blocking: Any = e.c.id.is_not(None)
            elif journey.entry.reentry == "after_exit":
                blocking = or_(e.c.ended_at.is_(None), e.c.ended_at >= m.c.entered_at)
            else:
                blocking = and_(e.c.trigger == trigger, e.c.entered_at >= m.c.entered_at)
            query = (
                select(m.c.contact_id, m.c.entered_at)
                .where(
                    m.c.segment_id == seg_id,
                    m.c.entered_at >= row.activated_at,
                    ~exists().where(
                        e.c.journey_id == row.id, e.c.contact_id == m.c.contact_id, blocking
                    ),
                )
                .order_by(m.c.entered_at)
                .limit(1000)
            )
            if journey.entry.when is not None:
                env = SqlEnv(
                    catalog=load_catalog(conn),
                    now=clock.now(),
                    zone=settings.zone,
                    dialect=conn.dialect.name,
                )
                query = query.where(
                    exists().where(
                        contacts.c.id == m.c.contact_id, compile_filter(journey.entry.when, env)
                    )
                )
            candidates = conn.execute(query).all()
            if not candidates:
                continue
            enrolled, _ = enrol_contacts(
                conn,
                clock,
                row.key,
                [c.contact_id for c in candidates],
                zone=settings.zone,
                trigger=trigger,
                require_active=False,
                slots={c.contact_id: f"{trigger}:{c.entered_at.isoformat()}" for c in candidates},
            )
            made += len(enrolled)
    return made


def _date_bound(type_: str, moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).date().isoformat() if type_ == "date" else moment.isoformat()


def enrol_from_dates(conn: Connection, clock: Clock, settings: Settings) -> int:
    """Enrol contacts whose date field plus (or minus) the offset has come, since the
    journey was activated: once per contact and trigger (a changed date does not re-enrol)."""
    made = 0
    now = clock.now()
    catalog = None
    for row, journey in _active(conn):
        for i, trigger in enumerate(journey.entry.triggers):
            if not isinstance(trigger, d.DateTrigger) or row.activated_at is None:
                continue
            catalog = catalog or load_catalog(conn)
            ref = catalog.resolve(trigger.date_field)
            if ref is None or ref.type not in ("date", "datetime"):
                continue  # the field was removed after activation
            offset = trigger.offset or timedelta(0)
            shift = offset if trigger.before else -offset
            field = {"field": trigger.date_field}
            flt = parse_filter(
                {
                    "all": [
                        {**field, "op": "lte", "value": _date_bound(ref.type, now + shift,
                                                                    settings.zone)},
                        {**field, "op": "gte", "value": _date_bound(
                            ref.type, row.activated_at + shift, settings.zone)},
                    ]
                }
            )  # fmt: skip
            if journey.entry.when is not None:
                flt = All.model_validate({"all": [flt, journey.entry.when]})
            env = SqlEnv(catalog=catalog, now=now, zone=settings.zone, dialect=conn.dialect.name)
            key = f"date:{i}"
            e = enrolments
            blocking: Any = e.c.trigger == key
            if journey.entry.reentry == "never":
                blocking = e.c.id.is_not(None)
            elif journey.entry.reentry == "after_exit":
                blocking = or_(blocking, e.c.ended_at.is_(None))
            candidates = list(
                conn.execute(
                    select(contacts.c.id)
                    .where(
                        contacts.c.merged_into_id.is_(None),
                        compile_filter(flt, env),
                        ~exists().where(
                            e.c.journey_id == row.id, e.c.contact_id == contacts.c.id, blocking
                        ),
                    )
                    .order_by(contacts.c.id)
                    .limit(1000)
                ).scalars()
            )
            if candidates:
                enrolled, _ = enrol_contacts(
                    conn,
                    clock,
                    row.key,
                    candidates,
                    zone=settings.zone,
                    trigger=key,
                    require_active=False,
                )
                made += len(enrolled)
    return made


# Date triggers scan contacts by a field value: at most once a minute per engine.
DATE_SCAN_EVERY = timedelta(minutes=1)
_last_date_scan: weakref.WeakKeyDictionary[Engine, datetime] = weakref.WeakKeyDictionary()


def journeys_step(engine: Engine, clock: Clock, settings: Settings) -> int:
    """The worker's periodic step: segment and date triggers, then one batch of due
    enrolments."""
    now = clock.now()
    last = _last_date_scan.get(engine)
    with engine.begin() as conn:
        entered = enrol_from_segments(conn, clock, settings)
        if last is None or not last <= now < last + DATE_SCAN_EVERY:
            entered += enrol_from_dates(conn, clock, settings)
            _last_date_scan[engine] = now
    return entered + run_due(engine, clock, settings)
