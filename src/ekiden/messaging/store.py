"""Email templates in the database: create, change (each change is a new version), read,
archive. A send pins the version it rendered; old versions are never changed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, insert, select, update
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.messaging.context import Extras, custom_field_keys, sample_context
from ekiden.messaging.models import (
    EmailTemplate,
    EmailTemplateChanges,
    EmailTemplateIn,
    TemplateVersion,
)
from ekiden.messaging.tables import email_template_versions, email_templates
from ekiden.messaging.templates import check_part, render_part
from ekiden.messaging.topics import set_template_topic, template_topics

SAMPLE_EXTRAS = Extras(
    sender_name="sample",
    sender_address="sender@example.com",
    postal_address="sample",
    email_key="sample",
    send_key="sample",
    variant=None,
    unsubscribe_url="https://example.com/u/sample",
    preferences_url="https://example.com/u/sample/preferences",
)
CONTENT = ("category", "subject", "preheader", "html", "text", "sender_name", "sender_address")


def check_content(conn: Connection, content: dict[str, Any]) -> None:
    """Raise TemplateProblem for the first part that does not compile, uses an unknown name
    or leaves the sandbox."""
    keys = custom_field_keys(conn)
    parts = [(p, content[p]) for p in ("subject", "preheader", "html", "text") if content.get(p)]
    for part, source in parts:
        check_part(part, source, keys)
    # a trial render catches what only shows when it runs (the sandbox's refusals above all)
    sample = sample_context(keys, SAMPLE_EXTRAS)
    for part, source in parts:
        render_part(part, source, sample)


def _joined() -> Select[Any]:
    """Each template with the content of its current version."""
    t = email_templates.c
    return select(
        t.id,
        t.key,
        t.name,
        t.version,
        t.created_at,
        t.updated_at,
        t.archived_at,
        *[email_template_versions.c[c] for c in CONTENT],
    ).join(
        email_template_versions,
        (email_template_versions.c.template_id == t.id)
        & (email_template_versions.c.version == t.version),
    )


def _current(conn: Connection, key: str) -> Any:
    row = conn.execute(_joined().where(email_templates.c.key == key)).mappings().first()
    if row is None:
        raise NotFound(f"no email template {key!r}", code="email_not_found")
    return row


def get_template(conn: Connection, key: str) -> EmailTemplate:
    """The template's current version; NotFound when there is no such key."""
    row = dict(_current(conn, key))
    row["topic"] = template_topics(conn, [row["id"]]).get(row["id"])
    return EmailTemplate.model_validate(row)


def list_templates(conn: Connection, *, archived: bool = False) -> list[EmailTemplate]:
    rows = (
        conn.execute(
            _joined()
            .where(
                email_templates.c.archived_at.is_not(None)
                if archived
                else email_templates.c.archived_at.is_(None)
            )
            .order_by(email_templates.c.key)
        )
        .mappings()
        .all()
    )
    topics = template_topics(conn, [r["id"] for r in rows])
    return [EmailTemplate.model_validate({**r, "topic": topics.get(r["id"])}) for r in rows]


def create_template(conn: Connection, clock: Clock, data: EmailTemplateIn) -> EmailTemplate:
    """Store a new template as version 1. TemplateProblem (422) when a part is invalid,
    Conflict (409) when the key is taken."""
    content = data.model_dump(include=set(CONTENT))
    check_content(conn, content)
    now = clock.now()
    try:
        with conn.begin_nested():
            template_id = conn.execute(
                insert(email_templates)
                .values(
                    key=data.key,
                    name=data.name,
                    category=data.category,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
                .returning(email_templates.c.id)
            ).scalar_one()
    except IntegrityError:
        raise Conflict(
            f"an email template with key {data.key!r} exists", code="email_exists"
        ) from None
    conn.execute(
        insert(email_template_versions).values(
            template_id=template_id, version=1, created_at=now, **content
        )
    )
    if data.topic is not None:
        set_template_topic(conn, template_id, data.category, data.topic)
    return get_template(conn, data.key)


def update_template(
    conn: Connection, clock: Clock, key: str, changes: EmailTemplateChanges
) -> EmailTemplate:
    """Apply ``changes``; a change of content is stored as the next version."""
    current = _current(conn, key)
    given = changes.model_dump(exclude_unset=True)
    for required in ("name", "category", "subject", "preheader", "html"):
        if required in given and given[required] is None:
            raise Invalid(f"{required} cannot be null", details={"field": required})
    content = {c: given.get(c, current[c]) for c in CONTENT}
    now = clock.now()
    values: dict[str, Any] = {"updated_at": now}
    if "name" in given:
        values["name"] = given["name"]
    if any(content[c] != current[c] for c in CONTENT):
        check_content(conn, content)
        version = current["version"] + 1
        conn.execute(
            insert(email_template_versions).values(
                template_id=current["id"], version=version, created_at=now, **content
            )
        )
        values.update(version=version, category=content["category"])
    conn.execute(
        update(email_templates).where(email_templates.c.id == current["id"]).values(values)
    )
    topic = (
        given["topic"]
        if "topic" in given
        else template_topics(conn, [current["id"]]).get(current["id"])
    )
    if "topic" in given or (topic is not None and content["category"] != current["category"]):
        set_template_topic(conn, current["id"], content["category"], topic)
    return get_template(conn, key)


def archive_template(conn: Connection, clock: Clock, key: str) -> None:
    """Hide the template from lists; messages already composed from it keep working."""
    current = _current(conn, key)
    if current["archived_at"] is None:
        conn.execute(
            update(email_templates)
            .where(email_templates.c.id == current["id"])
            .values(archived_at=clock.now(), updated_at=clock.now())
        )


def template_version(conn: Connection, key: str, version: int | None = None) -> TemplateVersion:
    """A saved version of template ``key`` (the current one when ``version`` is None);
    NotFound when either does not exist."""
    query = (
        select(email_templates.c.key, email_template_versions)
        .join(
            email_template_versions,
            email_template_versions.c.template_id == email_templates.c.id,
        )
        .where(email_templates.c.key == key)
    )
    if version is None:
        query = query.where(email_template_versions.c.version == email_templates.c.version)
    else:
        query = query.where(email_template_versions.c.version == version)
    row = conn.execute(query).mappings().first()
    if row is None:
        what = f"version {version} of email template" if version else "email template"
        raise NotFound(f"no {what} {key!r}", code="email_not_found")
    return TemplateVersion(
        template_id=row["template_id"],
        key=row["key"],
        version=row["version"],
        category=row["category"],
        subject=row["subject"],
        preheader=row["preheader"],
        html=row["html"],
        text=row["text"],
        sender_name=row["sender_name"],
        sender_address=row["sender_address"],
    )
