"""The demo's sales team: it works the hot leads the worker hands over, in simulated time —
accepts most and books a meeting a few days later, wins some of those (with a deal value in
JPY) and loses others, turns a few down. Deterministic: the same seed, the same decisions."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine

from ekiden.clock import FrozenClock
from ekiden.errors import EkidenError
from ekiden.lifecycle.feedback import list_handoffs, record_feedback
from ekiden.lifecycle.handoff_models import FeedbackIn, Handoff, TaskChanges
from ekiden.lifecycle.models import MoveIn
from ekiden.lifecycle.moves import move_contact, stage_state
from ekiden.lifecycle.tasks import call_list, update_task

DEAL_VALUES = [480_000, 1_200_000, 1_800_000, 2_400_000, 3_600_000, 6_000_000]
REJECTIONS = ["学生・求職者のため対象外", "競合他社の調査", "個人での情報収集"]
LOST_REASONS = ["競合製品に決定", "予算化は来期", "現行ツールで継続"]
OUTCOMES = ["won", "meeting", "won", "reject", "lost", "won", "none", "meeting", "lost", "won"]
"""What becomes of successive hot leads: a meeting and then won, lost or still open; turned
down (disqualified); or not dealt with yet (the task stays on the call list)."""


@dataclass(order=True)
class _Step:
    at: datetime
    seq: int
    handoff: Handoff = field(compare=False)
    action: str = field(compare=False)  # reject, meeting, won, lost
    value: int | None = field(default=None, compare=False)
    note: str | None = field(default=None, compare=False)


@dataclass
class Tally:
    rejected: int = 0
    meetings: int = 0
    won: int = 0
    lost: int = 0
    deal_total: int = 0


class SalesDesk:
    """Call ``work(until)`` at the end of each simulated day: it first does what was due
    during the day (at its own time), then plans what to do about the day's new hand-offs."""

    def __init__(self, engine: Engine, clock: FrozenClock, zone: ZoneInfo, seed: int = 23):
        self.engine = engine
        self.clock = clock
        self.zone = zone
        self.rng = random.Random(seed)
        self.seen: set[int] = set()
        self.steps: list[_Step] = []
        self.tally = Tally()
        self._seq = 0
        self._planned = 0

    def _at(self, after: datetime, days: int) -> datetime:
        """Office hours (10:00-18:00 local) ``days`` days after ``after``."""
        local = after.astimezone(self.zone) + timedelta(days=days)
        minutes = self.rng.randrange(10 * 60, 18 * 60)
        return local.replace(hour=minutes // 60, minute=minutes % 60, second=0, microsecond=0)

    def _plan(self, handoff: Handoff) -> None:
        """What sales will do about this lead, by turns of ``OUTCOMES`` (so that even a small
        demo shows each), at seeded times: a meeting one to four days after the alert, the
        deal won or lost one to two weeks after the meeting."""
        outcome = OUTCOMES[self._planned % len(OUTCOMES)]
        self._planned += 1
        steps: list[tuple[datetime, str, int | None, str | None]] = []
        if outcome == "reject":
            steps.append((self._at(handoff.raised_at, self.rng.randint(1, 3)), "reject", None,
                          self.rng.choice(REJECTIONS)))  # fmt: skip
        elif outcome != "none":
            meeting = self._at(handoff.raised_at, self.rng.randint(1, 4))
            steps.append((meeting, "meeting", None, "初回訪問のアポイント"))
            if outcome == "won":
                deal = self.rng.choice(DEAL_VALUES)
                steps.append((self._at(meeting, self.rng.randint(4, 12)), "won", deal, None))
            elif outcome == "lost":
                steps.append((self._at(meeting, self.rng.randint(3, 10)), "lost", None,
                              self.rng.choice(LOST_REASONS)))  # fmt: skip
        for at, action, value, note in steps:
            self._seq += 1
            self.steps.append(_Step(at, self._seq, handoff, action, value, note))

    def work(self, until: datetime) -> None:
        """Do the steps due by ``until`` in time order, then plan for new hand-offs; leaves
        the clock at ``until``."""
        self.steps.sort()
        while self.steps and self.steps[0].at <= until:
            step = self.steps.pop(0)
            self.clock.set(max(step.at, step.handoff.raised_at))
            with self.engine.begin() as conn:
                self._do(conn, step)
        self.clock.set(until)
        with self.engine.connect() as conn:
            fresh = [
                h
                for h in reversed(list_handoffs(conn, limit=100_000))
                if h.id not in self.seen and h.kind == "hot_lead"
            ]
        for handoff in fresh:
            self.seen.add(handoff.id)
            if handoff.crossing == 1:
                self._plan(handoff)

    def _do(self, conn: Connection, step: _Step) -> None:
        handoff = step.handoff
        stage = stage_state(conn, handoff.contact_id).lifecycle_stage
        user = handoff.owner_id
        given_by = f"user:{user}" if user is not None else "sales"
        try:
            with conn.begin_nested():
                self._act(conn, step, stage, user, given_by)
        except EkidenError:
            # the lead moved on in the meantime (merged, answered already): nothing to do
            return

    def _act(
        self, conn: Connection, step: _Step, stage: str | None, user: int | None, given_by: str
    ) -> None:
        handoff = step.handoff
        if step.action == "reject" and stage in (None, "acquired", "nurturing", "hot"):
            feedback = FeedbackIn(status="rejected", reason=step.note, stage="lost",
                                  user_id=user)  # fmt: skip
            record_feedback(conn, self.clock, handoff.id, feedback, given_by=given_by)
            self._close_task(conn, handoff, "cancelled", step.note or "")
            self.tally.rejected += 1
        elif step.action == "meeting" and stage in (None, "acquired", "nurturing", "hot"):
            record_feedback(conn, self.clock, handoff.id,
                            FeedbackIn(status="accepted", user_id=user),
                            given_by=given_by)  # fmt: skip
            move = MoveIn(stage="meeting", user_id=user, note=step.note)
            move_contact(conn, self.clock, handoff.contact_id, move, moved_by=None)
            self._close_task(conn, handoff, "done", "商談アポイント獲得")
            self.tally.meetings += 1
        elif step.action == "won" and stage == "meeting":
            move = MoveIn(stage="won", deal_value=step.value, currency="JPY", user_id=user)
            move_contact(conn, self.clock, handoff.contact_id, move, moved_by=None)
            self.tally.won += 1
            self.tally.deal_total += step.value or 0
        elif step.action == "lost" and stage == "meeting":
            move = MoveIn(stage="lost", user_id=user, note=step.note)
            move_contact(conn, self.clock, handoff.contact_id, move, moved_by=None)
            self.tally.lost += 1

    def _close_task(self, conn: Connection, handoff: Handoff, status: str, outcome: str) -> None:
        tasks, _ = call_list(conn, contact_id=handoff.contact_id, limit=100)
        for task in tasks:
            if task.handoff_id == handoff.id:
                changes = TaskChanges.model_validate({"status": status, "outcome": outcome})
                update_task(conn, self.clock, task.id, changes)
