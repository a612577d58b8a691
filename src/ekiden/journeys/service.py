"""Journeys: create, edit (a new version), activate / pause / resume / archive, enrol.

A journey's definition is stored per version and never changed: editing a live journey
writes version n+1, which new enrolments get, while running enrolments finish on theirs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.journeys.actions import unavailable_parts
from ekiden.journeys.definition import (
    DateTrigger,
    Enrol,
    Journey,
    References,
    check_references,
    parse_journey,
)
from ekiden.journeys.models import LIVE_STATES, JourneyOut
from ekiden.journeys.tables import enrolment_steps, enrolments, journey_versions, journeys
from ekiden.rules.bind import check, event_types_of
from ekiden.rules.fields import load_catalog
from ekiden.rules.loader import load_contact_data
from ekiden.rules.memory import Env, evaluate
from ekiden.segments.tables import lists, segments


@lru_cache(maxsize=256)
def _parsed(text: str) -> Journey:
    return parse_journey(orjson.loads(text))


def parsed_definition(definition: dict[str, Any]) -> Journey:
    """The model of a stored definition (parsed once per distinct definition)."""
    return _parsed(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS).decode())


def definition_of(conn: Connection, journey_id: int, version: int) -> Journey:
    stored = conn.execute(
        select(journey_versions.c.definition).where(
            journey_versions.c.journey_id == journey_id, journey_versions.c.version == version
        )
    ).scalar_one()
    return parsed_definition(stored)


def email_template_keys(conn: Connection) -> frozenset[str]:
    """Keys of the email templates that can be sent (the one place that knows where)."""
    from ekiden.messaging.tables import email_templates

    return frozenset(
        conn.execute(
            select(email_templates.c.key).where(email_templates.c.archived_at.is_(None))
        ).scalars()
    )


def known_references(conn: Connection) -> References:
    from ekiden.lifecycle.stages import list_stages
    from ekiden.scoring.tables import score_definitions

    return References(
        emails=email_template_keys(conn),
        lists=frozenset(
            conn.execute(select(lists.c.slug).where(lists.c.archived_at.is_(None))).scalars()
        ),
        segments=frozenset(
            conn.execute(select(segments.c.slug).where(segments.c.archived_at.is_(None))).scalars()
        ),
        journeys=frozenset(
            conn.execute(select(journeys.c.key).where(journeys.c.status != "archived")).scalars()
        ),
        stages=frozenset(
            s.key for kind in ("lifecycle", "buying") for s in list_stages(conn, kind)
        ),
        scores=frozenset(conn.execute(select(score_definitions.c.key)).scalars()),
    )


def validate(conn: Connection, raw: Any, zone: ZoneInfo) -> Journey:
    """Parse ``raw`` and check it against what exists now; Invalid names each problem."""
    journey = parse_journey(raw)
    check_references(journey, known_references(conn))
    catalog = load_catalog(conn)
    filters = [("entry.when", journey.entry.when), ("goal", journey.goal)]
    filters.append(("exit_when", journey.exit_when))
    for i, node in enumerate(journey.nodes):
        for j, case in enumerate(getattr(node, "branches", [])):
            filters.append((f"nodes[{i}] ({node.id}).branches[{j}].when", case.when))
        filters.append((f"nodes[{i}] ({node.id}).condition", getattr(node, "condition", None)))
    for i, trigger in enumerate(journey.entry.triggers):
        if isinstance(trigger, DateTrigger):
            ref = catalog.resolve(trigger.date_field)
            if ref is None or ref.type not in ("date", "datetime"):
                raise Invalid(
                    f"invalid journey: entry.triggers[{i}].date_field: "
                    f"no date or date-time field {trigger.date_field!r}",
                    code="invalid_journey",
                )
    for where, flt in filters:
        if flt is None:
            continue
        try:
            check(flt, catalog, zone)
        except Invalid as exc:
            raise Invalid(
                f"invalid journey: {where}: {exc.message}", code="invalid_journey"
            ) from None
    return journey


def _as_dict(journey: Journey) -> dict[str, Any]:
    return journey.model_dump(mode="json", exclude_defaults=True, by_alias=True)


def journey_row(conn: Connection, key: str) -> Any:
    row = conn.execute(select(journeys).where(journeys.c.key == key)).first()
    if row is None:
        raise NotFound(f"no journey {key!r}")
    return row


def get_journey(conn: Connection, key: str) -> JourneyOut:
    row = journey_row(conn, key)
    stored = conn.execute(
        select(journey_versions.c.definition).where(
            journey_versions.c.journey_id == row.id, journey_versions.c.version == row.version
        )
    ).scalar_one()
    return JourneyOut(
        key=row.key,
        name=row.name,
        status=row.status,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        activated_at=row.activated_at,
        definition=stored,
    )


def list_journeys(conn: Connection) -> list[JourneyOut]:
    keys = conn.execute(select(journeys.c.key).order_by(journeys.c.key)).scalars().all()
    return [get_journey(conn, k) for k in keys]


def create_journey(conn: Connection, clock: Clock, raw: Any, zone: ZoneInfo) -> JourneyOut:
    """A new journey in draft, version 1. Conflict when the key is taken."""
    journey = validate(conn, raw, zone)
    now = clock.now()
    try:
        with conn.begin_nested():
            new_id = conn.execute(
                insert(journeys)
                .values(
                    key=journey.key,
                    name=journey.name,
                    status="draft",
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
                .returning(journeys.c.id)
            ).scalar_one()
    except IntegrityError:
        raise Conflict(f"a journey {journey.key!r} already exists") from None
    conn.execute(
        insert(journey_versions).values(
            journey_id=new_id, version=1, definition=_as_dict(journey), created_at=now
        )
    )
    return get_journey(conn, journey.key)


def update_journey(
    conn: Connection, clock: Clock, key: str, raw: Any, zone: ZoneInfo
) -> JourneyOut:
    """Store ``raw`` as the next version; running enrolments stay on theirs."""
    row = journey_row(conn, key)
    if row.status == "archived":
        raise Conflict(f"journey {key!r} is archived")
    journey = validate(conn, raw, zone)
    if journey.key != key:
        raise Invalid(f"key: the definition is for {journey.key!r}, not {key!r}")
    if row.status == "active":
        _check_available(journey)
    now = clock.now()
    conn.execute(
        insert(journey_versions).values(
            journey_id=row.id,
            version=row.version + 1,
            definition=_as_dict(journey),
            created_at=now,
        )
    )
    conn.execute(
        update(journeys)
        .where(journeys.c.id == row.id)
        .values(version=row.version + 1, name=journey.name, updated_at=now)
    )
    return get_journey(conn, key)


def _check_available(journey: Journey) -> None:
    missing = unavailable_parts(journey)
    if missing:
        raise Invalid(
            f"journey {journey.key!r} cannot run yet: " + "; ".join(missing),
            code="not_available",
            details=missing,
        )


def _set_status(conn: Connection, clock: Clock, key: str, status: str, **extra: Any) -> None:
    conn.execute(
        update(journeys)
        .where(journeys.c.key == key)
        .values(status=status, updated_at=clock.now(), **extra)
    )


def activate_journey(conn: Connection, clock: Clock, key: str, zone: ZoneInfo) -> JourneyOut:
    """Start a draft (or a paused journey): its triggers look at facts from now on.

    Refused (Invalid) when the definition uses a step or trigger that cannot run here or
    names something that no longer exists."""
    row = journey_row(conn, key)
    if row.status == "archived":
        raise Conflict(f"journey {key!r} is archived")
    if row.status == "active":
        return get_journey(conn, key)
    journey = definition_of(conn, row.id, row.version)
    check_references(journey, known_references(conn))
    _check_available(journey)
    _set_status(conn, clock, key, "active", activated_at=clock.now())
    return get_journey(conn, key)


def pause_journey(conn: Connection, clock: Clock, key: str) -> JourneyOut:
    """Stop moving enrolments and enrolling contacts; they wait where they are."""
    row = journey_row(conn, key)
    if row.status != "active":
        raise Conflict(f"journey {key!r} is {row.status}, not active")
    _set_status(conn, clock, key, "paused")
    return get_journey(conn, key)


def resume_journey(conn: Connection, clock: Clock, key: str, zone: ZoneInfo) -> JourneyOut:
    row = journey_row(conn, key)
    if row.status != "paused":
        raise Conflict(f"journey {key!r} is {row.status}, not paused")
    return activate_journey(conn, clock, key, zone)


def archive_journey(conn: Connection, clock: Clock, key: str) -> JourneyOut:
    """Archive: live enrolments exit; the history and statistics stay."""
    row = journey_row(conn, key)
    now = clock.now()
    live = conn.execute(
        select(enrolments.c.id, enrolments.c.contact_id, enrolments.c.node).where(
            enrolments.c.journey_id == row.id, enrolments.c.state.in_(LIVE_STATES)
        )
    ).all()
    if live:
        conn.execute(
            insert(enrolment_steps),
            [
                {
                    "enrolment_id": e.id,
                    "journey_id": row.id,
                    "contact_id": e.contact_id,
                    "node": e.node,
                    "node_type": "archived",
                    "result": "exited",
                    "at": now,
                    "detail": {"reason": "journey archived"},
                }
                for e in live
            ],
        )
        conn.execute(
            update(enrolments)
            .where(enrolments.c.journey_id == row.id, enrolments.c.state.in_(LIVE_STATES))
            .values(state="exited", due_at=None, ended_at=now, entry_slot=_ended_slot())
        )
    _set_status(conn, clock, key, "archived", archived_at=now)
    return get_journey(conn, key)


def _ended_slot() -> Any:
    """An ending enrolment frees the "live" slot (after_exit) and keeps the others."""
    from sqlalchemy import case

    return case((enrolments.c.entry_slot == "live", None), else_=enrolments.c.entry_slot)


def _slot(reentry: str, trigger: str) -> str:
    if reentry == "never":
        return "once"
    if reentry == "after_exit":
        return "live"
    # always: one enrolment per fact (event, score change, date); manual enrolment and
    # journey-to-journey hand-overs each time they are asked for
    once = trigger.startswith(("event:", "score:", "date:"))
    return trigger if once else f"{trigger}:{uuid.uuid4().hex}"


def missing_contacts(conn: Connection, contact_ids: Sequence[int]) -> list[int]:
    wanted = sorted(set(contact_ids))
    found: set[int] = set()
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        found.update(
            conn.execute(
                select(contacts.c.id).where(
                    contacts.c.id.in_(chunk), contacts.c.merged_into_id.is_(None)
                )
            ).scalars()
        )
    return [i for i in wanted if i not in found]


def enrol_contacts(
    conn: Connection,
    clock: Clock,
    key: str,
    contact_ids: Sequence[int],
    *,
    zone: ZoneInfo,
    trigger: str = "manual",
    require_active: bool = True,
    slots: Mapping[int, str] | None = None,
) -> tuple[list[int], list[int]]:
    """Enrol contacts at the journey's start, due now; returns (enrolled, skipped).

    Contacts that do not exist raise Invalid naming them (nothing is enrolled). Those the
    re-entry policy, the entry condition or the entry limit keep out are skipped. The
    re-entry policy is a unique constraint, so concurrent triggers cannot double it."""
    missing = missing_contacts(conn, contact_ids)
    if missing:
        shown = ", ".join(map(str, missing[:20]))
        raise Invalid(f"no such contacts: {shown}", code="unknown_contact", details=missing)
    query = select(journeys).where(journeys.c.key == key)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no journey {key!r}")
    if conn.dialect.name == "postgresql" and definition_of(conn, row.id, row.version).entry.limit:
        # the entry limit is counted under this lock (only then: it serialises enrolments)
        row = conn.execute(query.with_for_update()).one()
    if row.status != "active":
        if require_active:
            raise Conflict(f"journey {key!r} is {row.status}; activate it first")
        return [], sorted(set(contact_ids))
    journey = definition_of(conn, row.id, row.version)
    entry = journey.entry
    now = clock.now()
    enrolled: list[int] = []
    skipped: list[int] = []
    room: int | None = None
    if entry.limit is not None:
        used = conn.execute(
            select(func.count()).select_from(enrolments).where(enrolments.c.journey_id == row.id)
        ).scalar_one()
        room = max(entry.limit - int(used), 0)
    env = Env(catalog=load_catalog(conn), now=now, zone=zone) if entry.when else None
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for contact_id in dict.fromkeys(contact_ids):
        if room is not None and room <= 0:
            skipped.append(contact_id)
            continue
        if entry.when is not None and env is not None:
            data = load_contact_data(conn, contact_id, event_types=event_types_of(entry.when))
            if not evaluate(entry.when, data, env):
                skipped.append(contact_id)
                continue
        new_id = conn.execute(
            dialect.insert(enrolments)
            .values(
                journey_id=row.id,
                version=row.version,
                contact_id=contact_id,
                node=journey.start,
                state="running",
                due_at=now,
                trigger=trigger,
                entry_slot=(
                    slots[contact_id]
                    if slots and contact_id in slots and entry.reentry == "always"
                    else _slot(entry.reentry, trigger)
                ),
                entered_at=now,
            )
            .on_conflict_do_nothing(index_elements=["journey_id", "contact_id", "entry_slot"])
            .returning(enrolments.c.id)
        ).scalar_one_or_none()
        if new_id is None:
            skipped.append(contact_id)
        else:
            enrolled.append(contact_id)
            if room is not None:
                room -= 1
    return enrolled, skipped


def enrols_into(journey: Journey) -> set[str]:
    return {n.journey for n in journey.nodes if isinstance(n, Enrol)}
