"""Subscription topics (ニュースレター, セミナー案内, 製品情報, …) and contacts' choices.

A marketing template may belong to one topic. A contact receives a topic's email when they are
subscribed to it: their own choice when they made one (a row of ``email_topic_choices``, with
the evidence: when, how, from where), otherwise the topic's ``default_subscribed``. Every change
of a choice is also an ``email_topic_changed`` event in the contact's history. The rule itself
is ``compliance.topic_refused``, part of ``may_send`` and ``mailable``, so it holds when a
message is queued and again right before it is delivered. Transactional email ignores topics.

Topics are archived, never deleted: choices are consent evidence and stay. An archived topic
leaves the preference page; its choices still hold for messages already queued.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.contacts.merge import MergeContext, merge_step
from ekiden.contacts.service import require_live_contact
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.messaging.models import (
    ContactTopic,
    Localized,
    Topic,
    TopicChanges,
    TopicIn,
)
from ekiden.messaging.tables import (
    email_template_topics,
    email_templates,
    email_topic_choices,
    email_topics,
)
from ekiden.tracking.events import NewEvent, record_events

TOPIC_EVENT = "email_topic_changed"
SOURCES = ("preferences", "api", "cli")


def topic_not_found(key: str) -> NotFound:
    return NotFound(f"no email topic {key!r}", code="topic_not_found", details={"topic": key})


def _unknown(keys: Iterable[str]) -> Invalid:
    names = ", ".join(repr(k) for k in keys)
    return Invalid(f"unknown email topic {names}", code="unknown_topic", details={"field": "topic"})


def _templates_by_topic(conn: Connection, topic_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {t: [] for t in topic_ids}
    if not topic_ids:
        return found
    rows = conn.execute(
        select(email_template_topics.c.topic_id, email_templates.c.key)
        .join(email_templates, email_templates.c.id == email_template_topics.c.template_id)
        .where(
            email_template_topics.c.topic_id.in_(topic_ids),
            email_templates.c.archived_at.is_(None),
        )
        .order_by(email_templates.c.key)
    )
    for row in rows:
        found[int(row.topic_id)].append(str(row.key))
    return found


def _model(row: Any, templates: list[str]) -> Topic:
    return Topic(
        id=row.id,
        key=row.key,
        name=Localized(ja=row.name_ja, en=row.name_en),
        description=Localized(ja=row.description_ja, en=row.description_en),
        default_subscribed=bool(row.default_subscribed),
        position=row.position,
        templates=templates,
        created_at=row.created_at,
        updated_at=row.updated_at,
        archived_at=row.archived_at,
    )


def _row(conn: Connection, key: str) -> Any:
    row = conn.execute(select(email_topics).where(email_topics.c.key == key)).first()
    if row is None:
        raise topic_not_found(key)
    return row


def get_topic(conn: Connection, key: str) -> Topic:
    """The topic ``key`` (archived ones too); NotFound ``topic_not_found`` otherwise."""
    row = _row(conn, key)
    return _model(row, _templates_by_topic(conn, [row.id])[row.id])


def list_topics(conn: Connection, *, archived: bool = False) -> list[Topic]:
    """Live topics (or archived ones) in page order: position, then key."""
    archived_at = email_topics.c.archived_at
    rows = conn.execute(
        select(email_topics)
        .where(archived_at.is_not(None) if archived else archived_at.is_(None))
        .order_by(email_topics.c.position, email_topics.c.key)
    ).all()
    templates = _templates_by_topic(conn, [r.id for r in rows])
    return [_model(r, templates[r.id]) for r in rows]


def create_topic(conn: Connection, clock: Clock, data: TopicIn) -> Topic:
    """Store a topic; Conflict ``topic_exists`` when the key is taken (archived ones too)."""
    now = clock.now()
    try:
        with conn.begin_nested():
            conn.execute(
                insert(email_topics).values(
                    key=data.key,
                    name_ja=data.name.ja.strip(),
                    name_en=data.name.en.strip(),
                    description_ja=data.description.ja.strip(),
                    description_en=data.description.en.strip(),
                    default_subscribed=data.default_subscribed,
                    position=data.position,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        raise Conflict(
            f"an email topic with key {data.key!r} exists",
            code="topic_exists",
            details={"topic": data.key},
        ) from None
    return get_topic(conn, data.key)


def update_topic(conn: Connection, clock: Clock, key: str, changes: TopicChanges) -> Topic:
    """Change names, descriptions, the default or the position. A new default applies to
    every contact who never chose (their state follows it); choices made stay."""
    row = _row(conn, key)
    given = changes.model_dump(exclude_unset=True)
    values: dict[str, Any] = {}
    for field in ("default_subscribed", "position"):
        if field in given:
            if given[field] is None:
                raise Invalid(f"{field} cannot be null", details={"field": field})
            values[field] = given[field]
    for field in ("name", "description"):
        if field in given:
            if given[field] is None:
                raise Invalid(f"{field} cannot be null", details={"field": field})
            values[f"{field}_ja"] = given[field]["ja"].strip()
            values[f"{field}_en"] = given[field]["en"].strip()
    if values:
        values["updated_at"] = clock.now()
        conn.execute(update(email_topics).where(email_topics.c.id == row.id).values(values))
    return get_topic(conn, key)


def archive_topic(conn: Connection, clock: Clock, key: str) -> None:
    """Take a topic off the preference page. Conflict ``topic_in_use`` (naming the templates)
    while live templates belong to it: move them to another topic (or none) first."""
    row = _row(conn, key)
    used = _templates_by_topic(conn, [row.id])[row.id]
    if used:
        raise Conflict(
            f"email topic {key!r} is used by the templates {', '.join(used)}",
            code="topic_in_use",
            details={"topic": key, "templates": used},
        )
    if row.archived_at is None:
        now = clock.now()
        conn.execute(
            update(email_topics)
            .where(email_topics.c.id == row.id)
            .values(archived_at=now, updated_at=now)
        )


# --- the topic of a template ---


def template_topics(conn: Connection, template_ids: Iterable[int]) -> dict[int, str]:
    """template id -> topic key, for the templates that have a topic."""
    ids = list(template_ids)
    if not ids:
        return {}
    rows = conn.execute(
        select(email_template_topics.c.template_id, email_topics.c.key)
        .join(email_topics, email_topics.c.id == email_template_topics.c.topic_id)
        .where(email_template_topics.c.template_id.in_(ids))
    )
    return {int(r.template_id): str(r.key) for r in rows}


def set_template_topic(
    conn: Connection, template_id: int, category: str, topic: str | None
) -> None:
    """Put the template in ``topic`` (a live topic's key) or in none (None). Invalid
    ``unknown_topic`` for a key that is not a live topic; Invalid when a transactional template
    is given a topic (transactional mail ignores topics, so it would mean nothing)."""
    if topic is None:
        conn.execute(
            delete(email_template_topics).where(email_template_topics.c.template_id == template_id)
        )
        return
    if category != "marketing":
        raise Invalid(
            "only marketing templates belong to a topic; transactional email ignores topics",
            details={"field": "topic"},
        )
    topic_id = conn.execute(
        select(email_topics.c.id).where(
            email_topics.c.key == topic, email_topics.c.archived_at.is_(None)
        )
    ).scalar_one_or_none()
    if topic_id is None:
        raise _unknown([topic])
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(email_template_topics)
        .values(template_id=template_id, topic_id=topic_id)
        .on_conflict_do_update(index_elements=["template_id"], set_={"topic_id": topic_id})
    )


# --- contacts' choices ---


def _states(conn: Connection, contact_id: int) -> list[tuple[Any, Any]]:
    """(live topic row, the contact's choice row or None) in page order."""
    topics = conn.execute(
        select(email_topics)
        .where(email_topics.c.archived_at.is_(None))
        .order_by(email_topics.c.position, email_topics.c.key)
    ).all()
    choices = {
        int(r.topic_id): r
        for r in conn.execute(
            select(email_topic_choices).where(email_topic_choices.c.contact_id == contact_id)
        )
    }
    return [(t, choices.get(int(t.id))) for t in topics]


def contact_topics(conn: Connection, contact_id: int) -> list[ContactTopic]:
    """The contact's state for every live topic. NotFound for an unknown or merged contact."""
    require_live_contact(conn, contact_id)
    return [
        ContactTopic(
            topic=t.key,
            name=Localized(ja=t.name_ja, en=t.name_en),
            description=Localized(ja=t.description_ja, en=t.description_en),
            subscribed=bool(c.subscribed if c is not None else t.default_subscribed),
            chosen=c is not None,
            source=None if c is None else c.source,
            source_ref=None if c is None else c.source_ref,
            changed_at=None if c is None else c.changed_at,
        )
        for t, c in _states(conn, contact_id)
    ]


def choose_topics(
    conn: Connection,
    clock: Clock,
    contact_id: int,
    choices: Mapping[str, bool],
    *,
    source: str,
    source_ref: str | None = None,
    texts_shown: Mapping[str, str] | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    event_properties: Mapping[str, Any] | None = None,
) -> list[str]:
    """Record the contact's choice (topic key -> subscribed) for each given topic and return
    the keys whose state changed. Only changes are stored: a choice equal to the current state
    records nothing, so repeating a request changes nothing. Each change keeps its evidence
    (source, source_ref, the text shown, IP, user agent, time) and is an ``email_topic_changed``
    event. Invalid ``unknown_topic`` naming every key that is not a live topic (nothing is
    stored then); NotFound for an unknown contact."""
    if source not in SOURCES:
        raise Invalid(f"topic choice source must be one of {', '.join(SOURCES)}")
    require_live_contact(conn, contact_id)
    states = {t.key: (t, c) for t, c in _states(conn, contact_id)}
    unknown = [k for k in choices if k not in states]
    if unknown:
        raise _unknown(unknown)
    now = clock.now()
    changed: list[str] = []
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for key, wanted in choices.items():
        topic, choice = states[key]
        current = bool(choice.subscribed if choice is not None else topic.default_subscribed)
        if current == bool(wanted):
            continue
        values = {
            "subscribed": bool(wanted),
            "source": source,
            "source_ref": source_ref,
            "text_shown": (texts_shown or {}).get(key),
            "ip": ip,
            "user_agent": user_agent,
            "changed_at": now,
        }
        conn.execute(
            dialect.insert(email_topic_choices)
            .values(contact_id=contact_id, topic_id=topic.id, **values)
            .on_conflict_do_update(index_elements=["contact_id", "topic_id"], set_=values)
        )
        changed.append(key)
    if changed:
        record_events(
            conn,
            clock,
            [
                NewEvent(
                    type=TOPIC_EVENT,
                    occurred_at=now,
                    source="email" if source == "preferences" else "api",
                    contact_id=contact_id,
                    properties={
                        **(event_properties or {}),
                        "topic": key,
                        "subscribed": bool(choices[key]),
                        "method": source,
                    },
                    ip=ip,
                    user_agent=user_agent,
                )
                for key in changed
            ],
        )
    return changed


@merge_step
def merge_topic_choices(ctx: MergeContext) -> None:
    """The winner keeps every topic choice either made; where both chose for the same topic,
    an opt-out wins (the more restrictive answer, as for the unsubscribe flag)."""
    conn = ctx.conn
    c = email_topic_choices.c
    theirs = {
        int(r.topic_id): r
        for r in conn.execute(select(email_topic_choices).where(c.contact_id == ctx.loser_id))
    }
    if not theirs:
        return
    ours = {
        int(r.topic_id): r
        for r in conn.execute(select(email_topic_choices).where(c.contact_id == ctx.winner_id))
    }
    moved = 0
    for topic_id, row in theirs.items():
        mine = ours.get(topic_id)
        if mine is not None and (not mine.subscribed or row.subscribed):
            continue  # the winner's choice is as restrictive already
        values = dict(row._mapping)
        values["contact_id"] = ctx.winner_id
        if mine is not None:
            conn.execute(
                delete(email_topic_choices).where(
                    c.contact_id == ctx.winner_id, c.topic_id == topic_id
                )
            )
        conn.execute(insert(email_topic_choices).values(values))
        moved += 1
    conn.execute(delete(email_topic_choices).where(c.contact_id == ctx.loser_id))
    if moved:
        ctx.moved["email_topic_choices"] = moved
