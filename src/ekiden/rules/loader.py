"""Load one contact with everything a filter may look at, for the in-memory evaluator."""

from __future__ import annotations

from sqlalchemy import Connection, select

from ekiden.contacts.tables import accounts, contact_tags, contacts
from ekiden.errors import NotFound
from ekiden.rules.memory import ContactData, EventData
from ekiden.scoring.tables import contact_scores
from ekiden.segments.tables import list_members, lists, segment_members, segments
from ekiden.tracking.tables import events


def load_contact_data(
    conn: Connection, contact_id: int, *, event_types: set[str] | None = None
) -> ContactData:
    """The contact's fields, account, tags and events (only ``event_types`` when given:
    a filter names the types it needs, see ``event_types_of``)."""
    row = conn.execute(select(contacts).where(contacts.c.id == contact_id)).mappings().first()
    if row is None:
        raise NotFound(f"no contact with id {contact_id}")
    account = None
    if row["account_id"] is not None:
        found = (
            conn.execute(select(accounts).where(accounts.c.id == row["account_id"]))
            .mappings()
            .first()
        )
        account = dict(found) if found else None
    tags = set(
        conn.execute(
            select(contact_tags.c.tag).where(contact_tags.c.contact_id == contact_id)
        ).scalars()
    )
    query = select(
        events.c.type,
        events.c.occurred_at,
        events.c.path,
        events.c.name,
        events.c.dwell_ms,
        events.c.properties,
        events.c.machine,
    ).where(events.c.contact_id == contact_id)
    if event_types is not None:
        if not event_types:
            query = query.where(events.c.id.is_(None))
        else:
            query = query.where(events.c.type.in_(sorted(event_types)))
    history = [
        EventData(
            type=e.type,
            occurred_at=e.occurred_at,
            path=e.path,
            name=e.name,
            dwell_ms=e.dwell_ms,
            properties=e.properties or {},
            machine=bool(e.machine),
        )
        for e in conn.execute(query)
    ]
    in_segments = set(
        conn.execute(
            select(segments.c.slug)
            .join(segment_members, segment_members.c.segment_id == segments.c.id)
            .where(segment_members.c.contact_id == contact_id)
        ).scalars()
    )
    on_lists = set(
        conn.execute(
            select(lists.c.slug)
            .join(list_members, list_members.c.list_id == lists.c.id)
            .where(list_members.c.contact_id == contact_id)
        ).scalars()
    )
    scores = {
        r.score_key: float(r.value)
        for r in conn.execute(
            select(contact_scores.c.score_key, contact_scores.c.value).where(
                contact_scores.c.contact_id == contact_id
            )
        )
    }
    fields = {k: v for k, v in row.items() if k not in ("custom",)}
    return ContactData(
        fields=fields,
        custom=dict(row["custom"] or {}),
        account=account,
        tags=tags,
        events=history,
        segments=in_segments,
        lists=on_lists,
        scores=scores,
    )
