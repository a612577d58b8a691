"""REST API for email templates under /api/emails and subscription topics under
/api/email-topics, plus contacts' topic choices (admin key)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from ekiden.errors import Invalid
from ekiden.messaging import store, topics
from ekiden.messaging.compose import render_message
from ekiden.messaging.models import (
    ContactTopic,
    EmailTemplate,
    EmailTemplateChanges,
    EmailTemplateIn,
    Preview,
    Topic,
    TopicChanges,
    TopicChoice,
    TopicIn,
)
from ekiden.web.deps import AdminKey, Conn, Ctx, ReadConn
from ekiden.web.pagination import Page

router = APIRouter(prefix="/api", tags=["emails"])

PREVIEW_MESSAGE_ID = 0  # previews are not messages: their links record nothing useful


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_id: int
    version: int | None = Field(None, description="a saved version; the current one if omitted")


class Validated(BaseModel):
    valid: bool


@router.get("/emails")
def list_emails(_: AdminKey, conn: ReadConn, archived: bool = False) -> Page[EmailTemplate]:
    """Every template (current versions), by key; ``archived=true`` lists archived ones."""
    return Page(items=store.list_templates(conn, archived=archived), next=None)


@router.post("/emails", status_code=201)
def create_email(body: EmailTemplateIn, _: AdminKey, conn: Conn, ctx: Ctx) -> EmailTemplate:
    """Create a template (version 1). 422 names the part, line and variable at fault."""
    return store.create_template(conn, ctx.clock, body)


@router.post("/emails/validate")
def validate_email(body: EmailTemplateIn, _: AdminKey, conn: ReadConn) -> Validated:
    """Check a template without saving it: 422 as for create, else ``{"valid": true}``."""
    store.check_content(conn, body.model_dump())
    return Validated(valid=True)


@router.get("/emails/{key}")
def get_email(key: str, _: AdminKey, conn: ReadConn) -> EmailTemplate:
    return store.get_template(conn, key)


@router.patch("/emails/{key}")
def update_email(
    key: str, body: EmailTemplateChanges, _: AdminKey, conn: Conn, ctx: Ctx
) -> EmailTemplate:
    """Change a template; changed content becomes the next version (older ones are kept)."""
    return store.update_template(conn, ctx.clock, key, body)


@router.delete("/emails/{key}", status_code=204)
def archive_email(key: str, _: AdminKey, conn: Conn, ctx: Ctx) -> Response:
    """Archive a template; messages already composed from it keep working."""
    store.archive_template(conn, ctx.clock, key)
    return Response(status_code=204)


@router.post("/emails/{key}/preview")
def preview_email(key: str, body: PreviewIn, _: AdminKey, conn: ReadConn, ctx: Ctx) -> Preview:
    """The message as ``contact_id`` would get it (without tracking links and pixel)."""
    rendered = render_message(
        conn,
        ctx.clock,
        ctx.settings,
        template=key,
        version=body.version,
        contact_id=body.contact_id,
        message_id=PREVIEW_MESSAGE_ID,
        send_key="preview",
        tracking=False,
    )
    sender = f"{rendered.sender_name} <{rendered.sender_address}>"
    to = f"{rendered.to_name} <{rendered.to_address}>" if rendered.to_name else rendered.to_address
    return Preview(
        subject=rendered.subject,
        preheader=rendered.preheader,
        html=rendered.html,
        text=rendered.text,
        from_=sender,
        to=to,
    )


# --- subscription topics ---


@router.get("/email-topics")
def list_topics(_: AdminKey, conn: ReadConn, archived: bool = False) -> Page[Topic]:
    """Live topics in page order (``archived=true``: archived ones), with their templates."""
    return Page(items=topics.list_topics(conn, archived=archived), next=None)


@router.post("/email-topics", status_code=201)
def create_topic(body: TopicIn, _: AdminKey, conn: Conn, ctx: Ctx) -> Topic:
    """Create a topic; 409 ``topic_exists`` when the key is taken."""
    return topics.create_topic(conn, ctx.clock, body)


@router.get("/email-topics/{key}")
def get_topic(key: str, _: AdminKey, conn: ReadConn) -> Topic:
    return topics.get_topic(conn, key)


@router.patch("/email-topics/{key}")
def update_topic(key: str, body: TopicChanges, _: AdminKey, conn: Conn, ctx: Ctx) -> Topic:
    """Change names, descriptions, the default or the position."""
    return topics.update_topic(conn, ctx.clock, key, body)


@router.delete("/email-topics/{key}", status_code=204)
def archive_topic(key: str, _: AdminKey, conn: Conn, ctx: Ctx) -> Response:
    """Archive a topic (choices are kept as evidence); 409 ``topic_in_use`` while live
    templates belong to it."""
    topics.archive_topic(conn, ctx.clock, key)
    return Response(status_code=204)


@router.get("/contacts/{contact_id}/email-topics")
def get_contact_topics(contact_id: int, _: AdminKey, conn: ReadConn) -> Page[ContactTopic]:
    """The contact's state for every live topic: their choice, else the topic's default."""
    return Page(items=topics.contact_topics(conn, contact_id), next=None)


@router.put("/contacts/{contact_id}/email-topics/{key}")
def put_contact_topic(
    contact_id: int, key: str, body: TopicChoice, api_key: AdminKey, conn: Conn, ctx: Ctx
) -> ContactTopic:
    """Record the contact's choice for one topic (e.g. asked by phone), with the API key and
    ``source_ref`` as evidence. Unknown topic: 404 ``topic_not_found``."""
    topics.get_topic(conn, key)  # 404 for an unknown key
    source_ref = f"api:{api_key.prefix}" + (f":{body.source_ref}" if body.source_ref else "")
    try:
        topics.choose_topics(
            conn,
            ctx.clock,
            contact_id,
            {key: body.subscribed},
            source="api",
            source_ref=source_ref,
        )
    except Invalid:  # archived: not a topic a contact can choose any more
        raise topics.topic_not_found(key) from None
    return next(t for t in topics.contact_topics(conn, contact_id) if t.topic == key)
