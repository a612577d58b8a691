"""Lifecycle state follows a contact merge.

- Sales tasks and hand-offs move to the winner: the call list names the person sales will
  reach, never a merged-away record.
- Hot-lead states: the loser's state for a definition the winner has none of moves across;
  where both have one, the winner's stays (the worker looks at the merged contact again, so a
  crossing the merge causes is still alerted once).
- Stages, per kind (lifecycle, buying): the winner takes the loser's stage when the loser was
  further along (a later stage of the line, or won against anything), never a lost stage over
  an open one, and never out of the winner's won stage. The move is recorded in the stage
  history with source ``merge``. The loser's own history stays where it is, for the record.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, exists, update
from sqlalchemy.orm import aliased

from ekiden.contacts.merge import MergeContext, merge_step
from ekiden.lifecycle.models import StageKind
from ekiden.lifecycle.moves import Move, apply_moves
from ekiden.lifecycle.stages import Order, load_order
from ekiden.lifecycle.tables import handoffs, hot_lead_states, sales_tasks

KINDS: tuple[StageKind, ...] = ("lifecycle", "buying")


@merge_step
def move_lifecycle_state(ctx: MergeContext) -> None:
    conn, winner, loser = ctx.conn, ctx.winner_id, ctx.loser_id
    tasks = conn.execute(
        update(sales_tasks).where(sales_tasks.c.contact_id == loser).values(contact_id=winner)
    )
    _count(ctx, "sales_tasks", int(tasks.rowcount or 0))
    moved = conn.execute(
        update(handoffs).where(handoffs.c.contact_id == loser).values(contact_id=winner)
    )
    _count(ctx, "handoffs", int(moved.rowcount or 0))
    _merge_hot_lead_states(conn, winner, loser)
    moves = []
    for kind in KINDS:
        order = load_order(conn, kind)
        theirs, ours = ctx.loser[f"{kind}_stage"], ctx.winner[f"{kind}_stage"]
        if _further(order, theirs, ours):
            note = f"merged with contact {loser}"
            moves.append(Move(winner, kind, ours, theirs, source="merge", note=note))
    apply_moves(conn, ctx.clock, moves)
    _count(ctx, "stage_moves", len(moves))


def _count(ctx: MergeContext, what: str, count: int) -> None:
    if count:  # the merge result lists what actually moved
        ctx.moved[what] = count


def _merge_hot_lead_states(conn: Connection, winner: int, loser: int) -> None:
    own = aliased(hot_lead_states)
    winner_has = exists().where(
        own.c.contact_id == winner, own.c.definition_id == hot_lead_states.c.definition_id
    )
    conn.execute(
        update(hot_lead_states)
        .where(hot_lead_states.c.contact_id == loser, ~winner_has)
        .values(contact_id=winner)
    )
    conn.execute(delete(hot_lead_states).where(hot_lead_states.c.contact_id == loser))


def _further(order: Order, theirs: str | None, ours: str | None) -> bool:
    """Whether stage ``theirs`` is further along than ``ours`` (see the module text)."""
    if theirs is None or theirs == ours:
        return False
    mine, other = order.get(ours) if ours else None, order.get(theirs)
    if other is None:  # a stage since removed from the configuration
        return False
    if mine is None:
        return True
    if mine.outcome == "won" or other.outcome == "lost":
        return False
    if other.outcome == "won":
        return True
    if mine.outcome == "lost":
        return False
    line = [s.key for s in order.line()]
    return line.index(other.key) > line.index(mine.key)
