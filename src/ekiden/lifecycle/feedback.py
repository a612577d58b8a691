"""Reading hand-offs and recording sales' verdict on them (R12)."""

from __future__ import annotations

from sqlalchemy import Connection, func, select, update

from ekiden.clock import Clock
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.lifecycle.handoff_models import DefinitionStats, FeedbackIn, Handoff
from ekiden.lifecycle.models import MoveIn
from ekiden.lifecycle.moves import move_contact
from ekiden.lifecycle.stages import load_order
from ekiden.lifecycle.tables import handoffs, stage_history
from ekiden.tracking.events import NewEvent, record_events


def get_handoff(conn: Connection, handoff_id: int) -> Handoff:
    row = conn.execute(select(handoffs).where(handoffs.c.id == handoff_id)).first()
    if row is None:
        raise NotFound(f"no hand-off with id {handoff_id}")
    return Handoff.model_validate(dict(row._mapping))


def list_handoffs(
    conn: Connection,
    *,
    contact_id: int | None = None,
    definition: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[Handoff]:
    """Hand-offs, newest first."""
    query = select(handoffs).order_by(handoffs.c.id.desc()).limit(limit)
    if contact_id is not None:
        query = query.where(handoffs.c.contact_id == contact_id)
    if definition is not None:
        query = query.where(handoffs.c.definition_key == definition)
    if before_id is not None:
        query = query.where(handoffs.c.id < before_id)
    return [Handoff.model_validate(dict(r._mapping)) for r in conn.execute(query)]


def record_feedback(
    conn: Connection, clock: Clock, handoff_id: int, data: FeedbackIn, *, given_by: str
) -> Handoff:
    """Store sales' verdict (accepted / rejected with a reason) on a hand-off, optionally
    moving the contact's lifecycle stage (e.g. back to nurturing). Conflict when a verdict
    was already given; Invalid when a rejection has no reason or the move is not allowed —
    nothing is stored then."""
    current = get_handoff(conn, handoff_id)
    if current.feedback is not None:
        raise Conflict(
            f"hand-off {handoff_id} already has feedback ({current.feedback})",
            code="feedback_given",
        )
    if data.status == "rejected" and not data.reason:
        raise Invalid("a rejection needs a reason, e.g. not ready yet", code="reason_required")
    if data.stage is not None:
        move_contact(
            conn,
            clock,
            current.contact_id,
            MoveIn(stage=data.stage, user_id=data.user_id, note=data.reason),
            moved_by=given_by,
            source="feedback",
        )
    now = clock.now()
    conn.execute(
        update(handoffs)
        .where(handoffs.c.id == handoff_id)
        .values(
            feedback=data.status,
            feedback_reason=data.reason,
            feedback_by=given_by,
            feedback_at=now,
        )
    )
    record_events(
        conn,
        clock,
        [
            NewEvent(
                type="handoff_feedback",
                occurred_at=now,
                source="system",
                contact_id=current.contact_id,
                properties={
                    "handoff_id": handoff_id,
                    "definition": current.definition_key,
                    "status": data.status,
                    "reason": data.reason,
                    "stage": data.stage,
                },
            )
        ],
    )
    return get_handoff(conn, handoff_id)


def definition_stats(conn: Connection, key: str) -> DefinitionStats:
    """Verdicts and wins of the hand-offs raised under ``key`` (deleted definitions too)."""
    verdicts: dict[str | None, int] = dict(
        conn.execute(
            select(handoffs.c.feedback, func.count())
            .where(handoffs.c.definition_key == key)
            .group_by(handoffs.c.feedback)
        ).all()
    )
    raised = sum(verdicts.values())
    if not raised:
        raise NotFound(f"no hand-offs were raised for {key!r}")
    accepted, rejected = verdicts.get("accepted", 0), verdicts.get("rejected", 0)
    reasons = conn.execute(
        select(handoffs.c.feedback_reason, func.count().label("n"))
        .where(handoffs.c.definition_key == key, handoffs.c.feedback == "rejected")
        .group_by(handoffs.c.feedback_reason)
        .order_by(func.count().desc(), handoffs.c.feedback_reason)
        .limit(10)
    ).all()
    won_keys = [s.key for s in load_order(conn, "lifecycle").stages if s.outcome == "won"]
    won = conn.execute(
        select(func.count(func.distinct(handoffs.c.contact_id))).where(
            handoffs.c.definition_key == key,
            select(stage_history.c.id)
            .where(
                stage_history.c.contact_id == handoffs.c.contact_id,
                stage_history.c.kind == "lifecycle",
                stage_history.c.to_stage.in_(won_keys),
                stage_history.c.moved_at >= handoffs.c.raised_at,
            )
            .exists(),
        )
    ).scalar_one()
    decided = accepted + rejected
    return DefinitionStats(
        definition_key=key,
        raised=raised,
        accepted=accepted,
        rejected=rejected,
        awaiting=verdicts.get(None, 0),
        acceptance_rate=accepted / decided if decided else None,
        won=int(won),
        rejection_reasons={str(r.feedback_reason): int(r.n) for r in reasons},
    )
