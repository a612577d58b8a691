"""Journey state follows a contact merge: the winner keeps the loser's enrolments, history,
on-site messages and coupons.

Where both had an enrolment holding the same re-entry slot of a journey (both in a "never"
journey, or both live in an "after_exit" one), the winner's stays in charge: the loser's ends
as exited (if still live) and gives up its slot. A coupon of a journey the winner also has a
code for stays with the merged-away contact, so the code it was sent keeps working.
"""

from __future__ import annotations

from sqlalchemy import and_, exists, insert, select, update
from sqlalchemy.orm import aliased

from ekiden.contacts.merge import MergeContext, merge_step
from ekiden.journeys.models import LIVE_STATES
from ekiden.journeys.tables import coupons, enrolment_steps, enrolments, onsite_messages


@merge_step
def move_journey_state(ctx: MergeContext) -> None:
    conn, winner, loser = ctx.conn, ctx.winner_id, ctx.loser_id
    now = ctx.clock.now()
    theirs = aliased(enrolments)
    clash = exists().where(
        theirs.c.contact_id == winner,
        theirs.c.journey_id == enrolments.c.journey_id,
        theirs.c.entry_slot == enrolments.c.entry_slot,
    )
    clashing = conn.execute(
        select(
            enrolments.c.id, enrolments.c.journey_id, enrolments.c.node, enrolments.c.state
        ).where(enrolments.c.contact_id == loser, clash)
    ).all()
    live = [c for c in clashing if c.state in LIVE_STATES]
    if live:
        conn.execute(
            insert(enrolment_steps),
            [
                {
                    "enrolment_id": c.id,
                    "journey_id": c.journey_id,
                    "contact_id": loser,
                    "node": c.node,
                    "node_type": "merge",
                    "result": "exited",
                    "at": now,
                    "detail": {"reason": f"contact merged into {winner}"},
                }
                for c in live
            ],
        )
        conn.execute(
            update(enrolments)
            .where(enrolments.c.id.in_([c.id for c in live]))
            .values(state="exited", due_at=None, ended_at=now)
        )
    if clashing:
        conn.execute(
            update(enrolments)
            .where(enrolments.c.id.in_([c.id for c in clashing]))
            .values(entry_slot=None)
        )
    moved = conn.execute(
        update(enrolments).where(enrolments.c.contact_id == loser).values(contact_id=winner)
    ).rowcount
    conn.execute(
        update(enrolment_steps)
        .where(enrolment_steps.c.contact_id == loser)
        .values(contact_id=winner)
    )
    conn.execute(
        update(onsite_messages)
        .where(onsite_messages.c.contact_id == loser)
        .values(contact_id=winner)
    )
    own = aliased(coupons)
    conn.execute(
        update(coupons)
        .where(
            coupons.c.contact_id == loser,
            ~exists().where(
                and_(own.c.contact_id == winner, own.c.journey_id == coupons.c.journey_id)
            ),
        )
        .values(contact_id=winner)
    )
    if moved:
        ctx.moved["enrolments"] = int(moved)
