"""Merging two contacts that turned out to be one person.

``merge_contacts`` runs in the caller's transaction: it locks both rows, records the loser's
snapshot in ``contact_merges``, turns the loser into a tombstone (``merged_into_id``; its email
and user id cleared so they no longer collide), runs every step of ``MERGE_STEPS`` and finally
writes the winner's new values. Any error rolls the whole merge back.

Extension point: a capability that keeps per-contact state (segment membership, scores,
journey enrolments, ...) registers a step so that nothing it holds is lost in a merge::

    from ekiden.contacts.merge import MergeContext, merge_step

    @merge_step
    def move_enrolments(ctx: MergeContext) -> None:
        moved = ctx.conn.execute(update(enrolments).where(...loser...).values(...winner...))
        ctx.moved["enrolments"] = moved.rowcount

A step gets a ``MergeContext``; it moves its own rows from ``ctx.loser_id`` to ``ctx.winner_id``,
may propose winner column values in ``ctx.winner_updates`` and reports counts in ``ctx.moved``.
A step raises EkidenError to refuse the merge (everything is rolled back); it must not commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.contacts.identity import add_identity, move_identities
from ekiden.contacts.models import STANDARD_FIELDS
from ekiden.contacts.service import contact_not_found, get_contact, live_contact_id
from ekiden.contacts.tables import consents, contact_merges, contact_tags, contacts, identities
from ekiden.errors import Conflict, Invalid
from ekiden.segments.dirty import mark_dirty
from ekiden.tracking.events import reassign_contact_events


@dataclass
class MergeContext:
    """What a merge step works with. ``winner`` / ``loser`` are the rows as they were before
    the merge (column name -> value); ``winner_updates`` collects values to write on the winner."""

    conn: Connection
    clock: Clock
    winner: dict[str, Any]
    loser: dict[str, Any]
    merged_by: str
    winner_updates: dict[str, Any] = field(default_factory=dict)
    moved: dict[str, int] = field(default_factory=dict)

    @property
    def winner_id(self) -> int:
        return int(self.winner["id"])

    @property
    def loser_id(self) -> int:
        return int(self.loser["id"])


@dataclass(frozen=True)
class MergeResult:
    winner_id: int
    loser_id: int
    merge_id: int
    moved: dict[str, int]


MergeStep = Callable[[MergeContext], None]
MERGE_STEPS: list[MergeStep] = []


def merge_step(step: MergeStep) -> MergeStep:
    """Register ``step`` to run in every merge (in registration order)."""
    MERGE_STEPS.append(step)
    return step


def merge_contacts(
    conn: Connection, clock: Clock, *, winner_id: int, loser_id: int, merged_by: str
) -> MergeResult:
    """Merge ``loser_id`` into ``winner_id``; the winner keeps everything both had.

    Invalid (422) when both ids are the same, NotFound (404) for an unknown id, Conflict (409)
    when either was already merged away (the message names where it went).
    """
    if winner_id == loser_id:
        raise Invalid("a contact cannot be merged with itself", code="same_contact")
    rows = {
        r["id"]: dict(r)
        for r in conn.execute(
            select(contacts)
            .where(contacts.c.id.in_([winner_id, loser_id]))
            .order_by(contacts.c.id)
            .with_for_update()  # two merges touching the same contacts run one after the other
        ).mappings()
    }
    for role, contact_id in (("winner", winner_id), ("loser", loser_id)):
        if contact_id not in rows:
            raise contact_not_found(conn, contact_id)
        if rows[contact_id]["merged_into_id"] is not None:
            live = live_contact_id(conn, contact_id)
            raise Conflict(
                f"the {role} contact {contact_id} was already merged into contact {live}",
                code="already_merged",
                details={"contact_id": contact_id, "merged_into": live},
            )
    ctx = MergeContext(conn, clock, rows[winner_id], rows[loser_id], merged_by)
    merge_id = _retire_loser(ctx)
    for step in MERGE_STEPS:
        step(ctx)
    ctx.winner_updates["updated_at"] = clock.now()
    conn.execute(update(contacts).where(contacts.c.id == winner_id).values(**ctx.winner_updates))
    mark_dirty(conn, clock, [winner_id])  # segments look at the merged contact again
    return MergeResult(winner_id, loser_id, merge_id, dict(ctx.moved))


def _retire_loser(ctx: MergeContext) -> int:
    """Snapshot the loser into contact_merges and make its row a tombstone."""
    snapshot = get_contact(ctx.conn, ctx.loser_id).model_dump(mode="json")
    snapshot["identities"] = [
        {"kind": r.kind, "value": r.value}
        for r in ctx.conn.execute(
            select(identities.c.kind, identities.c.value).where(
                identities.c.contact_id == ctx.loser_id
            )
        )
    ]
    now = ctx.clock.now()
    ctx.conn.execute(
        update(contacts)
        .where(contacts.c.id == ctx.loser_id)
        .values(email=None, external_id=None, merged_into_id=ctx.winner_id, updated_at=now)
    )
    return int(
        ctx.conn.execute(
            insert(contact_merges)
            .values(
                winner_id=ctx.winner_id,
                loser_id=ctx.loser_id,
                loser_snapshot=snapshot,
                merged_by=ctx.merged_by,
                merged_at=now,
            )
            .returning(contact_merges.c.id)
        ).scalar_one()
    )


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@merge_step
def move_events(ctx: MergeContext) -> None:
    ctx.moved["events"] = reassign_contact_events(ctx.conn, ctx.loser_id, ctx.winner_id)


@merge_step
def move_identities_and_addresses(ctx: MergeContext) -> None:
    """Anonymous ids and absorbed identifiers follow; the loser's own email and user id become
    identities of the winner, so finding the person by the old address finds the winner."""
    before = ctx.conn.execute(
        select(identities.c.kind).where(identities.c.contact_id == ctx.loser_id)
    ).all()
    move_identities(ctx.conn, ctx.loser_id, ctx.winner_id)
    for kind, column in (("email", "email"), ("user_id", "external_id")):
        if ctx.loser[column]:
            add_identity(ctx.conn, ctx.clock, kind, ctx.loser[column], ctx.winner_id)
    ctx.moved["identities"] = len(before)


@merge_step
def union_tags(ctx: MergeContext) -> None:
    rows = ctx.conn.execute(
        select(contact_tags.c.tag, contact_tags.c.created_at).where(
            contact_tags.c.contact_id == ctx.loser_id
        )
    ).all()
    if rows:
        dialect = postgresql if ctx.conn.dialect.name == "postgresql" else sqlite
        ctx.conn.execute(
            dialect.insert(contact_tags).on_conflict_do_nothing(),
            [{"contact_id": ctx.winner_id, "tag": r.tag, "created_at": r.created_at} for r in rows],
        )
        ctx.conn.execute(delete(contact_tags).where(contact_tags.c.contact_id == ctx.loser_id))
    ctx.moved["tags"] = len(rows)


@merge_step
def move_consents(ctx: MergeContext) -> None:
    """Consent rows move; the current consent is the most recent decision of either."""
    moved = ctx.conn.execute(
        update(consents)
        .where(consents.c.contact_id == ctx.loser_id)
        .values(contact_id=ctx.winner_id)
    ).rowcount
    ctx.moved["consents"] = int(moved or 0)
    latest = ctx.conn.execute(
        select(consents.c.status)
        .where(consents.c.contact_id == ctx.winner_id)
        .order_by(consents.c.recorded_at.desc(), consents.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if latest is not None:
        ctx.winner_updates["email_consent"] = latest
    elif ctx.winner["email_consent"] == "none":
        ctx.winner_updates["email_consent"] = ctx.loser["email_consent"]


@merge_step
def fill_fields(ctx: MergeContext) -> None:
    """The winner's non-empty values win; the loser fills the gaps (custom values per key)."""
    for column in (*STANDARD_FIELDS, "email", "external_id", "owner_id", "account_id"):
        if _empty(ctx.winner[column]) and not _empty(ctx.loser[column]):
            ctx.winner_updates[column] = ctx.loser[column]
    custom = {k: v for k, v in (ctx.loser["custom"] or {}).items() if not _empty(v)}
    custom.update({k: v for k, v in (ctx.winner["custom"] or {}).items() if not _empty(v)})
    ctx.winner_updates["custom"] = custom
    # The person was known since the earlier of the two, and seen last at the later.
    ctx.winner_updates["created_at"] = min(ctx.winner["created_at"], ctx.loser["created_at"])
    seen = [s for s in (ctx.winner["last_seen_at"], ctx.loser["last_seen_at"]) if s is not None]
    ctx.winner_updates["last_seen_at"] = max(seen) if seen else None


@merge_step
def keep_most_restrictive_flags(ctx: MergeContext) -> None:
    """If either opted out or was suppressed, the winner is (keeping the earliest time)."""
    unsubscribed = [s for s in (ctx.winner["unsubscribed_at"], ctx.loser["unsubscribed_at"]) if s]
    if unsubscribed:
        ctx.winner_updates["unsubscribed_at"] = min(unsubscribed)
    suppressed = [
        (row["suppressed_at"], row["suppression_reason"])
        for row in (ctx.winner, ctx.loser)
        if row["suppressed_at"] is not None
    ]
    if suppressed:
        at, reason = min(suppressed, key=lambda pair: pair[0])
        ctx.winner_updates["suppressed_at"] = at
        ctx.winner_updates["suppression_reason"] = reason


@merge_step
def move_memberships(ctx: MergeContext) -> None:
    """Static lists: the winner is on every list either was on. Dynamic segments: the
    loser's memberships end; the winner is re-evaluated with the merged history."""
    from ekiden.segments.tables import list_members, segment_members, segments

    dialect = postgresql if ctx.conn.dialect.name == "postgresql" else sqlite
    rows = ctx.conn.execute(
        select(list_members.c.list_id, list_members.c.added_at, list_members.c.source).where(
            list_members.c.contact_id == ctx.loser_id
        )
    ).all()
    if rows:
        ctx.conn.execute(
            dialect.insert(list_members).on_conflict_do_nothing(
                index_elements=["list_id", "contact_id"]
            ),
            [
                {"list_id": r.list_id, "contact_id": ctx.winner_id, "added_at": r.added_at,
                 "source": r.source}
                for r in rows
            ],
        )  # fmt: skip
    ctx.conn.execute(delete(list_members).where(list_members.c.contact_id == ctx.loser_id))
    left = (
        ctx.conn.execute(
            delete(segment_members)
            .where(segment_members.c.contact_id == ctx.loser_id)
            .returning(segment_members.c.segment_id)
        )
        .scalars()
        .all()
    )
    if left:
        ctx.conn.execute(
            update(segments)
            .where(segments.c.id.in_(left))
            .values(member_count=segments.c.member_count - 1)
        )
    if rows:
        ctx.moved["lists"] = len(rows)
