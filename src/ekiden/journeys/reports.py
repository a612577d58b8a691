"""What journeys did: per-node statistics, a contact's journey history, and what actions
left for a contact (on-site messages, coupons)."""

from __future__ import annotations

from sqlalchemy import Connection, func, or_, select

from ekiden.clock import Clock
from ekiden.contacts.service import require_live_contact
from ekiden.journeys.models import (
    LIVE_STATES,
    CouponOut,
    EnrolmentOut,
    JourneyStats,
    NodeStats,
    OnsiteMessageOut,
    StepOut,
)
from ekiden.journeys.service import definition_of, journey_row
from ekiden.journeys.tables import coupons, enrolment_steps, enrolments, journeys, onsite_messages

_NOT_PASSED = ("waiting", "exited", "converted", "failed")


def journey_stats(conn: Connection, key: str) -> JourneyStats:
    """Per node of the current version: entered (visits that finished plus those waiting
    there now), waiting, passed (left by a port), exited, converted (goal), failed."""
    row = journey_row(conn, key)
    journey = definition_of(conn, row.id, row.version)
    counts: dict[tuple[str, str], int] = {
        (r.node, r.result): int(r.n)
        for r in conn.execute(
            select(enrolment_steps.c.node, enrolment_steps.c.result, func.count().label("n"))
            .where(enrolment_steps.c.journey_id == row.id)
            .group_by(enrolment_steps.c.node, enrolment_steps.c.result)
        )
    }
    waiting: dict[str, int] = {
        node: int(n)
        for node, n in conn.execute(
            select(enrolments.c.node, func.count())
            .where(enrolments.c.journey_id == row.id, enrolments.c.state == "waiting")
            .group_by(enrolments.c.node)
        )
    }
    states: dict[str, int] = {
        state: int(n)
        for state, n in conn.execute(
            select(enrolments.c.state, func.count())
            .where(enrolments.c.journey_id == row.id)
            .group_by(enrolments.c.state)
        )
    }
    nodes = []
    for node in journey.nodes:
        mine = {result: n for (at, result), n in counts.items() if at == node.id}
        passed = sum(n for result, n in mine.items() if result not in _NOT_PASSED)
        now_waiting = int(waiting.get(node.id, 0))
        finished = passed + sum(mine.get(r, 0) for r in ("exited", "converted", "failed"))
        nodes.append(
            NodeStats(
                node=node.id,
                type=node.type,
                entered=finished + now_waiting,
                waiting=now_waiting,
                passed=passed,
                exited=mine.get("exited", 0),
                converted=mine.get("converted", 0),
                failed=mine.get("failed", 0),
            )
        )
    return JourneyStats(
        key=key,
        enrolled=sum(int(n) for n in states.values()),
        live=sum(int(states.get(s, 0)) for s in LIVE_STATES),
        completed=int(states.get("completed", 0)),
        exited=int(states.get("exited", 0)),
        converted=int(states.get("converted", 0)),
        failed=int(states.get("failed", 0)),
        nodes=nodes,
    )


def contact_history(conn: Connection, contact_id: int) -> list[EnrolmentOut]:
    """Every enrolment of the contact, newest first, each with its steps in order."""
    require_live_contact(conn, contact_id)
    rows = conn.execute(
        select(enrolments, journeys.c.key.label("journey_key"))
        .join(journeys, journeys.c.id == enrolments.c.journey_id)
        .where(enrolments.c.contact_id == contact_id)
        .order_by(enrolments.c.entered_at.desc(), enrolments.c.id.desc())
    ).all()
    steps: dict[int, list[StepOut]] = {}
    if rows:
        for s in conn.execute(
            select(enrolment_steps)
            .where(enrolment_steps.c.enrolment_id.in_([r.id for r in rows]))
            .order_by(enrolment_steps.c.id)
        ):
            steps.setdefault(s.enrolment_id, []).append(
                StepOut(
                    node=s.node, node_type=s.node_type, result=s.result, at=s.at, detail=s.detail
                )
            )
    return [
        EnrolmentOut(
            id=r.id,
            journey=r.journey_key,
            version=r.version,
            contact_id=r.contact_id,
            node=r.node,
            state=r.state,
            due_at=r.due_at,
            entered_at=r.entered_at,
            ended_at=r.ended_at,
            trigger=r.trigger,
            last_error=r.last_error,
            steps=steps.get(r.id, []),
        )
        for r in rows
    ]


def pending_onsite_messages(
    conn: Connection, clock: Clock, contact_id: int
) -> list[OnsiteMessageOut]:
    """Messages still to be shown, oldest first: not expired, not closed or clicked, and not
    shown yet (``show: once``) or shown until dismissed."""
    require_live_contact(conn, contact_id)
    now = clock.now()
    m = onsite_messages
    rows = conn.execute(
        select(m, journeys.c.key.label("journey_key"))
        .join(journeys, journeys.c.id == m.c.journey_id)
        .where(
            m.c.contact_id == contact_id,
            m.c.dismissed_at.is_(None),
            m.c.clicked_at.is_(None),
            or_(m.c.shown_at.is_(None), m.c.show == "until_dismissed"),
            or_(m.c.expires_at.is_(None), m.c.expires_at > now),
        )
        .order_by(onsite_messages.c.id)
    ).all()
    return [
        OnsiteMessageOut(
            id=r.id,
            journey=r.journey_key,
            title=r.title,
            message=r.message,
            link=r.link,
            link_text=r.link_text,
            show=r.show,
            shown_count=r.shown_count,
            shown_at=r.shown_at,
            dismissed_at=r.dismissed_at,
            clicked_at=r.clicked_at,
            created_at=r.created_at,
            expires_at=r.expires_at,
        )
        for r in rows
    ]


def coupons_of(conn: Connection, contact_id: int) -> list[CouponOut]:
    """The contact's coupon codes (templates show them by ``field``)."""
    require_live_contact(conn, contact_id)
    rows = conn.execute(
        select(coupons, journeys.c.key.label("journey_key"))
        .join(journeys, journeys.c.id == coupons.c.journey_id)
        .where(coupons.c.contact_id == contact_id)
        .order_by(coupons.c.id)
    ).all()
    return [
        CouponOut(
            code=r.code,
            journey=r.journey_key,
            field=r.field,
            issued_at=r.issued_at,
            expires_at=r.expires_at,
        )
        for r in rows
    ]
