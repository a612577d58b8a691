"""Configured stage orders (lifecycle and buying) and which moves between them are allowed.

A kind with no stored stages uses the built-in defaults below. Stages whose outcome is
``lost`` stand beside the ordered line (any open contact can be lost); every other stage,
``won`` included, is on the line in position order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select

from ekiden.contacts.tables import contacts
from ekiden.errors import Conflict, EkidenError, Invalid
from ekiden.i18n import gettext
from ekiden.lifecycle.models import Stage, StageIn, StageKind
from ekiden.lifecycle.tables import stage_rules, stages

KINDS: tuple[StageKind, ...] = ("lifecycle", "buying")

# English source names; the Japanese names come from the ja catalogue.
_DEFAULTS: dict[str, list[tuple[str, str, str | None, str | None, bool, bool]]] = {
    # key, English name, department, outcome, allow_skip, allow_back
    "lifecycle": [
        ("acquired", "Acquired", "marketing", None, True, False),
        ("nurturing", "Nurturing", "marketing", None, True, False),
        ("hot", "Hot (MQL)", "inside_sales", None, True, True),
        ("meeting", "Meeting (SQL)", "sales", None, True, True),
        ("won", "Won", "sales", "won", False, False),
        ("lost", "Lost / disqualified", "sales", "lost", True, True),
    ],
    "buying": [
        ("status_quo", "Status quo", None, None, True, True),
        ("interest", "Interest", None, None, True, True),
        ("solution_search", "Solution search", None, None, True, True),
        ("comparison", "Comparison", None, None, True, True),
    ],
}


def default_stages(kind: StageKind) -> list[Stage]:
    return [
        Stage(
            key=key,
            name=gettext("ja", english),
            name_en=english,
            department=department,
            outcome=outcome,
            allow_skip=skip,
            allow_back=back,
            position=i,
        )
        for i, (key, english, department, outcome, skip, back) in enumerate(_DEFAULTS[kind])
    ]


def check_kind(kind: str) -> StageKind:
    if kind not in KINDS:
        raise Invalid(f"stage kind must be lifecycle or buying, not {kind!r}", code="unknown_kind")
    return kind


def list_stages(conn: Connection, kind: StageKind) -> list[Stage]:
    """The stages of ``kind`` in order (the defaults while none are configured)."""
    rows = conn.execute(select(stages).where(stages.c.kind == kind).order_by(stages.c.position))
    found = [
        Stage(
            key=r.key,
            name=r.name,
            name_en=r.name_en,
            department=r.department,
            outcome=r.outcome,
            allow_skip=r.allow_skip,
            allow_back=r.allow_back,
            position=r.position,
        )
        for r in rows
    ]
    return found or default_stages(kind)


def _check_order(kind: StageKind, wanted: Sequence[StageIn]) -> None:
    keys = [s.key for s in wanted]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise Invalid(f"stage keys must be unique: {', '.join(repeated)}", code="duplicate_stage")
    if kind == "buying" and any(s.outcome for s in wanted):
        raise Invalid("buying stages have no outcome (won / lost)", code="invalid_stage")
    open_stages = [s for s in wanted if s.outcome is None]
    if not open_stages:
        raise Invalid("at least one stage must be open (without an outcome)", code="invalid_stage")
    if wanted[0].outcome is not None:
        raise Invalid(
            "the first stage is where new contacts enter; it cannot have an outcome",
            code="invalid_stage",
        )


def replace_stages(conn: Connection, kind: StageKind, wanted: Sequence[StageIn]) -> list[Stage]:
    """Store ``wanted`` as the order of ``kind``. A stage that contacts are in, or that a rule
    leads to, cannot be removed (Conflict naming it); nothing is changed then."""
    _check_order(kind, wanted)
    keys = {s.key for s in wanted}
    column = contacts.c.lifecycle_stage if kind == "lifecycle" else contacts.c.buying_stage
    occupied = conn.execute(
        select(column, func.count())
        .where(column.is_not(None), column.not_in(sorted(keys)))
        .group_by(column)
    ).all()
    if occupied:
        listed = ", ".join(f"{key} ({count} contacts)" for key, count in sorted(occupied))
        raise Conflict(
            f"stages that contacts are in cannot be removed: {listed}; move them first",
            code="stage_in_use",
            details={"stages": {str(k): int(n) for k, n in occupied}},
        )
    targeted = conn.execute(
        select(stage_rules.c.target)
        .where(stage_rules.c.kind == kind, stage_rules.c.target.not_in(sorted(keys)))
        .distinct()
    ).scalars()
    missing = sorted(targeted)
    if missing:
        raise Conflict(
            f"stages that rules lead to cannot be removed: {', '.join(missing)}",
            code="stage_in_use",
        )
    conn.execute(delete(stages).where(stages.c.kind == kind))
    conn.execute(
        insert(stages),
        [{**s.model_dump(), "kind": kind, "position": i} for i, s in enumerate(wanted)],
    )
    return list_stages(conn, kind)


@dataclass(frozen=True)
class Order:
    """The stages of one kind, ready to judge moves."""

    kind: StageKind
    stages: list[Stage]

    @property
    def first(self) -> Stage:
        return self.stages[0]

    def get(self, key: str) -> Stage | None:
        return next((s for s in self.stages if s.key == key), None)

    def require(self, key: str) -> Stage:
        found = self.get(key)
        if found is None:
            known = ", ".join(s.key for s in self.stages)
            raise Invalid(
                f"unknown {self.kind} stage {key!r}; known stages: {known}",
                code="unknown_stage",
                details={"stage": key, "known": [s.key for s in self.stages]},
            )
        return found

    def line(self) -> list[Stage]:
        return [s for s in self.stages if s.outcome != "lost"]

    def problem(self, current: str | None, target: str, *, automatic: bool) -> EkidenError | None:
        """Why moving from ``current`` to ``target`` is not allowed, or None when it is.
        A contact without a stage counts as being in the first stage."""
        goal = self.require(target)
        here = self.get(current) if current is not None else None
        if here is None:
            if goal.key == self.first.key:
                return None
            here = self.first
        if goal.key == here.key:
            return Conflict(f"the contact is already in stage {goal.key!r}", code="same_stage")
        if here.outcome is not None:
            if automatic or not here.allow_back:
                return Conflict(
                    f"stage {here.key!r} is closed ({here.outcome}); it cannot be left",
                    code="stage_closed",
                )
            if goal.outcome is not None:
                return Conflict(
                    f"reopen the contact into an open stage before moving it to {goal.key!r}",
                    code="stage_closed",
                )
            return None
        if goal.outcome == "lost":
            return None
        line = [s.key for s in self.line()]
        here_at, goal_at = line.index(here.key), line.index(goal.key)
        if goal_at < here_at:
            if automatic:
                return Conflict("automatic moves never go backwards", code="stage_backward")
            if not here.allow_back:
                return Conflict(
                    f"stage {here.key!r} cannot be left for an earlier stage ({goal.key!r})",
                    code="stage_backward",
                )
            return None
        skipped = line[here_at + 1 : goal_at]
        if skipped and not goal.allow_skip:
            return Conflict(
                f"stage {goal.key!r} cannot be entered by skipping {', '.join(skipped)}",
                code="stage_skip",
                details={"skipped": skipped},
            )
        return None


def load_order(conn: Connection, kind: StageKind) -> Order:
    return Order(kind, list_stages(conn, kind))
