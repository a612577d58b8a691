"""What the worker does to stages for a batch of changed contacts: entry into the first
stage, then automatic forward moves by rules (never backwards, never out of a closed stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.lifecycle.moves import Move, apply_moves
from ekiden.lifecycle.stages import KINDS, load_order
from ekiden.lifecycle.tables import stage_rules
from ekiden.rules.bind import walk
from ekiden.rules.model import FieldCondition, Filter, parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter

STAGE_FIELDS = frozenset(
    {"lifecycle_stage", "lifecycle_stage_at", "buying_stage", "buying_stage_at"}
)


@dataclass(frozen=True)
class _Rule:
    id: int
    target: str
    flt: Filter
    # whether the rule's answer can change when a stage changes within one pass
    names_stage: bool


def _names_stage(flt: Filter) -> bool:
    return any(
        isinstance(node, FieldCondition) and node.field in STAGE_FIELDS for _, node in walk(flt)
    )


def enter_first_stages(conn: Connection, clock: Clock, contact_ids: Sequence[int]) -> int:
    """Put live contacts without a stage into the first stage of each kind; returns how
    many entries were written."""
    moves: list[Move] = []
    for kind in KINDS:
        column = contacts.c[f"{kind}_stage"]
        fresh = conn.execute(
            select(contacts.c.id).where(
                contacts.c.id.in_(contact_ids),
                contacts.c.merged_into_id.is_(None),
                column.is_(None),
            )
        ).scalars()
        first = load_order(conn, kind).first.key
        moves.extend(Move(c, kind, None, first, "entry") for c in sorted(fresh))
    apply_moves(conn, clock, moves)
    return len(moves)


def contacts_without_stage(conn: Connection, *, after_id: int, limit: int) -> list[int]:
    """Ids of live contacts missing a lifecycle or buying stage, in id order after
    ``after_id`` (for entering a whole existing database in slices)."""
    query = (
        select(contacts.c.id)
        .where(
            contacts.c.id > after_id,
            contacts.c.merged_into_id.is_(None),
            contacts.c.lifecycle_stage.is_(None) | contacts.c.buying_stage.is_(None),
        )
        .order_by(contacts.c.id)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def _rules(conn: Connection, kind: str) -> list[_Rule]:
    rows = conn.execute(
        select(stage_rules.c.id, stage_rules.c.target, stage_rules.c.filter)
        .where(stage_rules.c.kind == kind, stage_rules.c.enabled.is_(True))
        .order_by(stage_rules.c.position, stage_rules.c.id)
    )
    parsed = [(r, parse_filter(r.filter)) for r in rows]
    return [_Rule(r.id, r.target, flt, _names_stage(flt)) for r, flt in parsed]


def advance_by_rules(
    conn: Connection, clock: Clock, env: SqlEnv, contact_ids: Sequence[int]
) -> int:
    """Apply the stage rules to these contacts; returns how many moves were made.

    In each round, per contact, the first rule (by position) that matches and whose move is
    allowed wins. Moved contacts are looked at again (a rule may name the stage they just
    reached), for at most as many rounds as there are stages. A rule is evaluated only for
    contacts it could move, and once per pass unless it names a stage field.
    """
    made = 0
    for kind in KINDS:
        rules = _rules(conn, kind)
        if not rules:
            continue
        order = load_order(conn, kind)
        column = contacts.c[f"{kind}_stage"]
        current: dict[int, str | None] = dict(
            conn.execute(
                select(contacts.c.id, column).where(
                    contacts.c.id.in_(sorted(set(contact_ids))),
                    contacts.c.merged_into_id.is_(None),
                )
            ).all()
        )
        evaluated: dict[int, set[int]] = {r.id: set() for r in rules}
        matched: dict[int, set[int]] = {r.id: set() for r in rules}
        pending = set(current)
        for _ in order.stages:
            chosen: dict[int, Move] = {}
            for rule in rules:
                if order.get(rule.target) is None:
                    continue
                candidates = [
                    c
                    for c in sorted(pending)
                    if c not in chosen
                    and order.problem(current[c], rule.target, automatic=True) is None
                ]
                unknown = [c for c in candidates if rule.names_stage or c not in evaluated[rule.id]]
                if unknown:
                    found = set(
                        conn.execute(
                            select(contacts.c.id).where(
                                contacts.c.id.in_(unknown), compile_filter(rule.flt, env)
                            )
                        ).scalars()
                    )
                    evaluated[rule.id].update(unknown)
                    matched[rule.id] = (matched[rule.id] - set(unknown)) | found
                for contact_id in candidates:
                    if contact_id in matched[rule.id]:
                        chosen[contact_id] = Move(
                            contact_id, kind, current[contact_id], rule.target, "rule",
                            rule_id=rule.id,
                        )  # fmt: skip
            if not chosen:
                break
            apply_moves(conn, clock, [chosen[c] for c in sorted(chosen)])
            made += len(chosen)
            current.update({c: m.to_stage for c, m in chosen.items()})
            pending = set(chosen)
    return made
