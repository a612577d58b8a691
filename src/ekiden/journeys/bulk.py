"""Set-based versions of what the engine does for one enrolment, for a batch of them.

The engine moves a claimed batch node by node: all enrolments standing at the same node of
the same journey version run it together. This module gives those groups what the one-row
code does with a handful of statements per contact, in a handful of statements per group:

- ``load_contacts_data``: ``rules.loader.load_contact_data`` for many contacts at once;
- bulk actions for the busiest node types (``send_email``, ``webhook``, ``change_stage``),
  each writing exactly what its one-row action in ``actions.py`` writes, under the same
  idempotency keys. A bulk action answers None for a contact it leaves to the one-row action
  (a merged contact, a contact twice in the group, anything unusual): that action then runs
  and raises or does what it does for one row.

The engine uses a bulk action only while ``ACTIONS`` still holds the one-row action it
mirrors (``MIRRORS``), so a replaced action is always the one that runs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Connection, any_, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.contacts.tables import accounts, contact_tags, contacts
from ekiden.errors import Conflict, EkidenError
from ekiden.journeys import actions
from ekiden.journeys import definition as d
from ekiden.journeys.actions import ActionContext
from ekiden.outbox import NewEntry, enqueue_many
from ekiden.rules.memory import ContactData, EventData
from ekiden.scoring.tables import contact_scores
from ekiden.segments.tables import list_members, lists, segment_members, segments
from ekiden.tracking.tables import events

CHUNK = 1000  # ids per IN list


def _chunks(ids: Sequence[int]) -> list[list[int]]:
    return [list(ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK)]


def among(conn: Connection, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """``column IN ids``; on PostgreSQL ``column = ANY(array)``: one parameter, so the
    statement is the same whatever the number of ids (parsed and planned once)."""
    if conn.dialect.name == "postgresql":
        array = bindparam(None, list(ids), type_=postgresql.ARRAY(BigInteger()))
        condition: ColumnElement[bool] = column == any_(array)
        return condition
    return column.in_(list(ids))  # type: ignore[no-any-return]


def load_contacts_data(
    conn: Connection, contact_ids: Sequence[int], *, event_types: set[str] | None = None
) -> dict[int, ContactData]:
    """What ``load_contact_data`` gives for each of ``contact_ids`` (those that exist), in
    seven statements per thousand contacts."""
    ids = sorted(set(contact_ids))
    found: dict[int, ContactData] = {}
    for chunk in _chunks(ids):
        rows = (
            conn.execute(select(contacts).where(among(conn, contacts.c.id, chunk))).mappings().all()
        )
        account_ids = sorted({r["account_id"] for r in rows if r["account_id"] is not None})
        account_rows = {
            a["id"]: dict(a)
            for a in (
                conn.execute(
                    select(accounts).where(among(conn, accounts.c.id, account_ids))
                ).mappings()
                if account_ids
                else []
            )
        }
        for row in rows:
            found[row["id"]] = ContactData(
                fields={k: v for k, v in row.items() if k != "custom"},
                custom=dict(row["custom"] or {}),
                account=(
                    account_rows.get(row["account_id"]) if row["account_id"] is not None else None
                ),
            )
        present = [i for i in chunk if i in found]
        if not present:
            continue
        for contact_id, tag in conn.execute(
            select(contact_tags.c.contact_id, contact_tags.c.tag).where(
                among(conn, contact_tags.c.contact_id, present)
            )
        ):
            found[contact_id].tags.add(tag)
        if event_types is None or event_types:
            query = select(
                events.c.contact_id,
                events.c.type,
                events.c.occurred_at,
                events.c.path,
                events.c.name,
                events.c.dwell_ms,
                events.c.properties,
                events.c.machine,
            ).where(among(conn, events.c.contact_id, present))
            if event_types is not None:
                query = query.where(events.c.type.in_(sorted(event_types)))
            for e in conn.execute(query.order_by(events.c.contact_id, events.c.id)):
                found[e.contact_id].events.append(
                    EventData(
                        type=e.type,
                        occurred_at=e.occurred_at,
                        path=e.path,
                        name=e.name,
                        dwell_ms=e.dwell_ms,
                        properties=e.properties or {},
                        machine=bool(e.machine),
                    )
                )
        for contact_id, slug in conn.execute(
            select(segment_members.c.contact_id, segments.c.slug)
            .join(segments, segment_members.c.segment_id == segments.c.id)
            .where(among(conn, segment_members.c.contact_id, present))
        ):
            found[contact_id].segments.add(slug)
        for contact_id, slug in conn.execute(
            select(list_members.c.contact_id, lists.c.slug)
            .join(lists, list_members.c.list_id == lists.c.id)
            .where(among(conn, list_members.c.contact_id, present))
        ):
            found[contact_id].lists.add(slug)
        for contact_id, key, value in conn.execute(
            select(
                contact_scores.c.contact_id, contact_scores.c.score_key, contact_scores.c.value
            ).where(among(conn, contact_scores.c.contact_id, present))
        ):
            found[contact_id].scores[key] = float(value)
    return found


def _live(conn: Connection, ids: Sequence[int]) -> dict[int, str | None]:
    """Live (not merged) contacts among ``ids`` and their email."""
    out: dict[int, str | None] = {}
    for chunk in _chunks(sorted(set(ids))):
        for contact_id, email in conn.execute(
            select(contacts.c.id, contacts.c.email).where(
                among(conn, contacts.c.id, chunk), contacts.c.merged_into_id.is_(None)
            )
        ):
            out[contact_id] = email
    return out


def _once(ctxs: Sequence[ActionContext]) -> set[int]:
    """Contacts that appear once in the group (a contact twice is left to the one-row path,
    which runs its enrolments one after the other)."""
    seen = Counter(c.contact_id for c in ctxs)
    return {c for c, n in seen.items() if n == 1}


def _webhook(ctxs: Sequence[ActionContext], node: d.CallWebhook) -> list[dict[str, Any] | None]:
    conn = ctxs[0].conn
    emails: dict[int, str | None] = {}
    for chunk in _chunks(sorted({c.contact_id for c in ctxs})):
        for contact_id, email in conn.execute(
            select(contacts.c.id, contacts.c.email).where(among(conn, contacts.c.id, chunk))
        ):
            emails[contact_id] = email
    entries = []
    for ctx in ctxs:
        body = {
            **node.body,
            "journey": ctx.journey.key,
            "node": node.id,
            "enrolment": ctx.enrolment_id,
            "contact": {"id": ctx.contact_id, "email": emails.get(ctx.contact_id)},
        }
        entries.append(
            NewEntry(
                kind="webhook",
                key=ctx.key(node.id),
                payload={"url": node.url, "body": body, "sign": True},
                contact_id=ctx.contact_id,
            )
        )
    written = enqueue_many(conn, ctxs[0].clock, entries)
    return [{"outbox_id": written.get(e.key)} for e in entries]


def _send_email(ctxs: Sequence[ActionContext], node: d.SendEmail) -> list[dict[str, Any] | None]:
    """``messaging.sending.send_emails`` (category marketing) for the group's live contacts:
    one ``email_messages`` row and one outbox row of kind "email" each, keyed as the one-row
    action keys them."""
    from ekiden.messaging.sending import send_emails

    conn, clock, settings = ctxs[0].conn, ctxs[0].clock, ctxs[0].settings
    live = _live(conn, [c.contact_id for c in ctxs])
    once = _once(ctxs)
    doable = {c.key(node.id) for c in ctxs if c.contact_id in live and c.contact_id in once}
    try:
        created = send_emails(
            conn,
            clock,
            settings,
            template=node.email,
            category="marketing",
            recipients=[(c.contact_id, c.key(node.id)) for c in ctxs if c.key(node.id) in doable],
        )
    except EkidenError:  # an unknown template: the one-row action raises it, per enrolment
        return [None] * len(ctxs)
    return [
        {"email": node.email, "message_id": created.get(c.key(node.id))}
        if c.key(node.id) in doable
        else None
        for c in ctxs
    ]


def _change_stage(
    ctxs: Sequence[ActionContext], node: d.ChangeStage
) -> list[dict[str, Any] | None]:
    """``lifecycle.moves.move_contact`` for many contacts: the moves the stage order allows
    are written together, the others are recorded as skipped (as the one-row action does)."""
    from ekiden.lifecycle.moves import Move, apply_moves
    from ekiden.lifecycle.stages import load_order
    from ekiden.segments.dirty import mark_dirty

    conn, clock = ctxs[0].conn, ctxs[0].clock
    kind = actions._stage_kind(conn, node.stage)
    order = load_order(conn, kind)  # type: ignore[arg-type]
    try:
        goal = order.require(node.stage)
    except EkidenError:
        return [None] * len(ctxs)
    column = contacts.c[f"{kind}_stage"]
    once = _once(ctxs)
    current: dict[int, str | None] = {}
    for chunk in _chunks(sorted(once)):
        query = (
            select(contacts.c.id, column)
            .where(among(conn, contacts.c.id, chunk), contacts.c.merged_into_id.is_(None))
            .order_by(contacts.c.id)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()  # concurrent moves of one contact queue up
        for contact_id, stage in conn.execute(query):
            current[contact_id] = stage
    out: list[dict[str, Any] | None] = []
    moves: list[Move] = []
    for ctx in ctxs:
        if ctx.contact_id not in current:
            out.append(None)
            continue
        problem = order.problem(current[ctx.contact_id], goal.key, automatic=False)
        if problem is not None:
            out.append(
                {"stage": node.stage, "skipped": problem.message}
                if isinstance(problem, Conflict)
                else None
            )
            continue
        moves.append(
            Move(
                contact_id=ctx.contact_id,
                kind=kind,  # type: ignore[arg-type]
                from_stage=current[ctx.contact_id],
                to_stage=goal.key,
                source="api",
                moved_by=f"journey:{ctx.journey.key}",
            )
        )
        out.append({"stage": node.stage})
    apply_moves(conn, clock, moves)
    mark_dirty(conn, clock, [m.contact_id for m in moves])
    return out


def _add_tag(ctxs: Sequence[ActionContext], node: d.TagAction) -> list[dict[str, Any] | None]:
    """``contacts.tags.add_tags`` with one tag for many contacts: attach it where missing,
    touch and mark those contacts (as there)."""
    from ekiden.contacts.tags import clean_tag
    from ekiden.segments.dirty import mark_dirty

    conn, clock = ctxs[0].conn, ctxs[0].clock
    try:
        tag = clean_tag(node.tag)
    except EkidenError:
        return [None] * len(ctxs)
    once = _once(ctxs)
    ids = sorted(once)
    now = clock.now()
    if conn.dialect.name == "postgresql":
        added = set(
            conn.exec_driver_sql(
                "INSERT INTO contact_tags (contact_id, tag, created_at) "
                "SELECT unnest(%(ids)s::bigint[]), %(tag)s, %(now)s "
                "ON CONFLICT DO NOTHING RETURNING contact_id",
                {"ids": ids, "tag": tag, "now": now.astimezone(UTC).replace(tzinfo=None)},
            ).scalars()
        )
    else:
        statement = (
            sqlite.insert(contact_tags)
            .on_conflict_do_nothing()
            .returning(contact_tags.c.contact_id)
        )
        rows = [{"contact_id": i, "tag": tag, "created_at": now} for i in ids]
        added = set(conn.execute(statement, rows).scalars()) if rows else set()
    changed = sorted(added)
    for chunk in _chunks(changed):
        # a tag change is a change of the contact: `updated_since` searches must see it
        conn.execute(
            contacts.update().where(among(conn, contacts.c.id, chunk)).values(updated_at=now)
        )
    mark_dirty(conn, clock, changed)
    return [{"changed": c.contact_id in added} if c.contact_id in once else None for c in ctxs]


BulkAction = Callable[[Sequence[ActionContext], Any], list[dict[str, Any] | None]]

BULK: dict[str, BulkAction] = {
    "send_email": _send_email,
    "webhook": _webhook,
    "change_stage": _change_stage,
    "add_tag": _add_tag,
}

# the one-row action each bulk action stands in for
MIRRORS: dict[str, Any] = {name: actions.ACTIONS[name] for name in BULK}


def bulk_action(node_type: str) -> BulkAction | None:
    """The bulk action for ``node_type``, while the registered one-row action is still the
    one it mirrors."""
    bulk = BULK.get(node_type)
    if bulk is None or actions.ACTIONS.get(node_type) is not MIRRORS[node_type]:
        return None
    return bulk


def group_by(items: Sequence[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
    grouped: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        grouped[key(item)].append(item)
    return grouped
