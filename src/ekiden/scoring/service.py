"""Reading scores (for other capabilities and the API), explaining them, and the worker steps.

``current_scores`` is the read interface other capabilities use; a contact without points
has no entry (the filter language counts that as 0).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.merge import MergeContext, merge_step
from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid, NotFound
from ekiden.scoring.compute import recompute, worth_now
from ekiden.scoring.models import (
    AwardOut,
    ContactScores,
    HistoryEntry,
    Recomputed,
    ScoreExplanation,
)
from ekiden.scoring.tables import (
    contact_scores,
    score_awards,
    score_definitions,
    score_history,
    score_rules,
)
from ekiden.tracking.tables import events

SWEEP_BATCH = 5000


def current_scores(conn: Connection, contact_ids: Sequence[int]) -> dict[int, dict[str, float]]:
    """{contact id: {score key: value}} for the given contacts; contacts without points
    are absent, and so are scores in which a contact has none."""
    found: dict[int, dict[str, float]] = {}
    ids = sorted(set(contact_ids))
    for start in range(0, len(ids), 1000):
        rows = conn.execute(
            select(
                contact_scores.c.contact_id, contact_scores.c.score_key, contact_scores.c.value
            ).where(contact_scores.c.contact_id.in_(ids[start : start + 1000]))
        )
        for row in rows:
            found.setdefault(row.contact_id, {})[row.score_key] = float(row.value)
    return found


def explain(conn: Connection, clock: Clock, contact_id: int) -> ContactScores:
    """Every score with each award behind it: "why is this contact at 42?"."""
    exists = conn.execute(select(contacts.c.id).where(contacts.c.id == contact_id)).first()
    if exists is None:
        raise NotFound(f"no contact with id {contact_id}")
    now = clock.now()
    stored = current_scores(conn, [contact_id]).get(contact_id, {})
    rows = conn.execute(
        select(
            score_awards.c.score_id,
            score_rules.c.key.label("rule"),
            score_rules.c.name.label("rule_name"),
            score_rules.c.kind,
            score_awards.c.event_id,
            events.c.type.label("event_type"),
            events.c.path.label("event_path"),
            score_awards.c.awarded_at,
            score_awards.c.points,
            worth_now(now, conn.dialect.name).label("points_now"),
        )
        .join(score_rules, score_rules.c.id == score_awards.c.rule_id)
        .outerjoin(events, events.c.id == score_awards.c.event_id)
        .where(score_awards.c.contact_id == contact_id)
        .order_by(score_awards.c.awarded_at.desc(), score_awards.c.id.desc())
    ).all()
    result: list[ScoreExplanation] = []
    for definition in conn.execute(select(score_definitions).order_by(score_definitions.c.key)):
        awards = [
            AwardOut(
                rule=r.rule, rule_name=r.rule_name, kind=r.kind, event_id=r.event_id,
                event_type=r.event_type, event_path=r.event_path, awarded_at=r.awarded_at,
                points=float(r.points), points_now=round(float(r.points_now), 6),
            )
            for r in rows
            if r.score_id == definition.id
        ]  # fmt: skip
        total = sum(float(r.points_now) for r in rows if r.score_id == definition.id)
        value = stored.get(definition.key, 0.0)
        result.append(
            ScoreExplanation(
                key=definition.key,
                name=definition.name,
                value=value,
                total_now=round(total, 6),
                capped=abs(total - value) > 1e-6 and bool(awards),
                awards=awards,
            )
        )
    return ContactScores(contact_id=contact_id, scores=result)


def history(
    conn: Connection,
    contact_id: int,
    *,
    score_key: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[HistoryEntry]:
    """The contact's score changes, newest first."""
    query = select(score_history).where(score_history.c.contact_id == contact_id)
    if score_key is not None:
        query = query.where(score_history.c.score_key == score_key)
    if before_id is not None:
        query = query.where(score_history.c.id < before_id)
    rows = conn.execute(query.order_by(score_history.c.id.desc()).limit(limit))
    return [
        HistoryEntry(id=r.id, score=r.score_key, value=r.value, previous=r.previous,
                     changed_at=r.changed_at)
        for r in rows
    ]  # fmt: skip


def recompute_scores(
    conn: Connection, clock: Clock, settings: Settings, *, score_keys: Sequence[str] | None = None
) -> Recomputed:
    """Full recompute of ``score_keys`` (every score when None) for the whole population;
    afterwards the stored values follow the current rules."""
    started = time.perf_counter()
    query = select(score_definitions.c.key, score_definitions.c.version)
    if score_keys is not None:
        query = query.where(score_definitions.c.key.in_(list(score_keys)))
    found = conn.execute(query).all()
    if score_keys is not None:
        missing = sorted(set(score_keys) - {r.key for r in found})
        if missing:
            raise NotFound(f"no score {missing[0]!r}", code="unknown_score")
    keys = [r.key for r in found]
    changed = recompute(conn, clock, settings.zone, score_keys=keys)
    now = clock.now()
    for row in found:
        conn.execute(
            update(score_definitions)
            .where(score_definitions.c.key == row.key)
            .values(built_version=row.version, recomputed_at=now, swept_at=now, sweep_cursor=None)
        )
    return Recomputed(scores=len(keys), contacts=changed, seconds=time.perf_counter() - started)


def score_changed_contacts(
    conn: Connection, clock: Clock, settings: Settings, contact_ids: Sequence[int]
) -> None:
    """Worker contact step: the contacts that just changed get their scores brought up to
    date in the same transaction, before segments and stages look at them."""
    recompute(conn, clock, settings.zone, contact_ids=contact_ids, mark_changed=False)


def recompute_due(engine: Engine, clock: Clock, settings: Settings) -> int:
    """Periodic step: a full recompute of one score whose rules changed since it was built,
    else one batch of the time-driven sweep (decay, expiry, relative dates)."""
    with engine.begin() as conn:
        stale = conn.execute(
            select(score_definitions.c.key)
            .where(score_definitions.c.built_version < score_definitions.c.version)
            .order_by(score_definitions.c.id)
            .limit(1)
        ).scalar_one_or_none()
        if stale is not None:
            recompute_scores(conn, clock, settings, score_keys=[stale])
            return 1
    return sweep_batch(engine, clock, settings)


def sweep_batch(engine: Engine, clock: Clock, settings: Settings) -> int:
    """Re-evaluate the next batch of contacts of the score whose sweep is due; returns the
    number of contacts looked at (0: no sweep due)."""
    now = clock.now()
    due_before = now - timedelta(minutes=settings.score_sweep_minutes)
    with engine.begin() as conn:
        definition = conn.execute(
            select(score_definitions)
            .where(
                or_(
                    score_definitions.c.sweep_cursor.is_not(None),
                    score_definitions.c.swept_at.is_(None),
                    score_definitions.c.swept_at <= due_before,
                )
            )
            .order_by(score_definitions.c.id)
            .limit(1)
        ).first()
        if definition is None:
            return 0
        start = definition.sweep_cursor or 0
        batch = list(
            conn.execute(
                select(contacts.c.id)
                .where(and_(contacts.c.id > start, contacts.c.merged_into_id.is_(None)))
                .order_by(contacts.c.id)
                .limit(SWEEP_BATCH)
            ).scalars()
        )
        if batch:
            recompute(conn, clock, settings.zone, contact_ids=batch, score_keys=[definition.key],
                      sweep=True)  # fmt: skip
        done = len(batch) < SWEEP_BATCH
        conn.execute(
            update(score_definitions)
            .where(score_definitions.c.id == definition.id)
            .values(
                sweep_cursor=None if done else batch[-1],
                swept_at=now if done else definition.swept_at,
            )
        )
        return max(len(batch), 1)


def leaders(conn: Connection, score_key: str, *, limit: int = 50) -> list[tuple[int, float]]:
    """(contact id, value) with the highest values of ``score_key`` first."""
    rows = conn.execute(
        select(contact_scores.c.contact_id, contact_scores.c.value)
        .where(contact_scores.c.score_key == score_key)
        .order_by(contact_scores.c.value.desc(), contact_scores.c.contact_id)
        .limit(limit)
    )
    return [(r.contact_id, float(r.value)) for r in rows]


MANUAL_EVENT = "score_adjusted"


def adjust_score(
    conn: Connection,
    clock: Clock,
    *,
    contact_id: int,
    score_key: str,
    points: float,
    reason: str,
    ref: str,
    zone: ZoneInfo | None = None,
) -> float:
    """Award ``points`` (negative: take them away) to a contact by hand or from a journey,
    outside the score's rules; returns the contact's new value of ``score_key``.

    The award is kept in the ledger under a hidden rule of kind ``manual`` per score and
    ``reason`` (named by the reason, so the explanation says why), and linked to a
    ``score_adjusted`` event in the contact's history (properties score, points, reason,
    ref). Recomputes only re-derive the awards of profile and event rules, so a manual award
    survives them; it never decays or expires. ``ref`` makes the call idempotent: the same
    ref for the same contact awards once. The value and its history are updated at once
    (bounded by the score's max / min points); ``zone`` is the settings' time zone, for the
    profile rules recomputed with it (Asia/Tokyo, the default setting, when not given).
    NotFound for an unknown score or contact, Invalid for zero points or an empty reason."""
    from ekiden.tracking.events import NewEvent, record_events

    if points == 0 or points != points:  # zero or NaN
        raise Invalid("points: give a non-zero number", code="invalid_points")
    if not reason.strip() or len(reason) > 500:
        raise Invalid("reason: give a reason of 1-500 characters", code="invalid_reason")
    if not ref or len(ref) > 200:
        raise Invalid("ref: give a reference of 1-200 characters", code="invalid_ref")
    score_id = conn.execute(
        select(score_definitions.c.id).where(score_definitions.c.key == score_key)
    ).scalar_one_or_none()
    if score_id is None:
        raise NotFound(f"no score {score_key!r}", code="unknown_score")
    found = conn.execute(
        select(contacts.c.id).where(
            contacts.c.id == contact_id, contacts.c.merged_into_id.is_(None)
        )
    ).first()
    if found is None:
        raise NotFound(f"no contact with id {contact_id}")
    now = clock.now()
    rule_key = "manual:" + hashlib.sha256(reason.encode()).hexdigest()[:24]
    rule_id = conn.execute(
        select(score_rules.c.id).where(
            score_rules.c.score_id == score_id, score_rules.c.key == rule_key
        )
    ).scalar_one_or_none()
    if rule_id is None:
        rule_id = conn.execute(
            insert(score_rules)
            .values(
                score_id=score_id, key=rule_key, name=reason, kind="manual", condition={},
                points=0.0, enabled=True, position=1_000_000, created_at=now, updated_at=now,
            )
            .returning(score_rules.c.id)
        ).scalar_one()  # fmt: skip
    once = hashlib.sha256(f"{score_key}\n{contact_id}\n{ref}".encode()).hexdigest()
    message_id = f"score:{once}"
    record_events(
        conn,
        clock,
        [
            NewEvent(
                type=MANUAL_EVENT,
                occurred_at=now,
                source="system",
                contact_id=contact_id,
                properties={"score": score_key, "points": points, "reason": reason, "ref": ref},
                message_id=message_id,
            )
        ],
    )
    event_id = conn.execute(
        select(events.c.id).where(events.c.message_id == message_id)
    ).scalar_one()
    done = conn.execute(
        select(score_awards.c.id).where(
            score_awards.c.contact_id == contact_id,
            score_awards.c.score_id == score_id,
            score_awards.c.event_id == event_id,
        )
    ).first()
    if done is None:
        conn.execute(
            insert(score_awards).values(
                rule_id=rule_id, score_id=score_id, contact_id=contact_id, event_id=event_id,
                awarded_at=now, points=float(points),
            )
        )  # fmt: skip
        recompute(
            conn,
            clock,
            zone or ZoneInfo("Asia/Tokyo"),
            contact_ids=[contact_id],
            score_keys=[score_key],
        )
    return current_scores(conn, [contact_id]).get(contact_id, {}).get(score_key, 0.0)


@merge_step
def move_manual_awards(ctx: MergeContext) -> None:
    """A merge hands the loser's manual awards to the winner (rule-derived awards follow the
    moved events and profile at the winner's next recompute)."""
    manual = select(score_rules.c.id).where(score_rules.c.kind == "manual")
    moved = ctx.conn.execute(
        update(score_awards)
        .where(score_awards.c.contact_id == ctx.loser_id, score_awards.c.rule_id.in_(manual))
        .values(contact_id=ctx.winner_id)
    ).rowcount
    if moved:
        ctx.moved["manual_score_awards"] = int(moved)
