"""Tags, consent and the opt-out flags of one contact (/api/contacts/{id}/...)."""

from __future__ import annotations

from fastapi import APIRouter

from ekiden.contacts.api_models import ConsentIn, ContactId, SuppressIn
from ekiden.contacts.consent import (
    ConsentRecord,
    consent_history,
    record_consent,
    resubscribe,
    suppress,
    unsubscribe,
    unsuppress,
)
from ekiden.contacts.models import Contact
from ekiden.contacts.service import get_contact, require_live_contact
from ekiden.contacts.tags import add_tags, remove_tag
from ekiden.web.deps import AdminKey, Conn, Ctx
from ekiden.web.pagination import Page

router = APIRouter(tags=["contacts"])


@router.put("/{contact_id}/tags/{tag:path}", response_model=Contact)
def put_tag(contact_id: ContactId, tag: str, conn: Conn, ctx: Ctx) -> Contact:
    """Attach a tag (idempotent); 422 for an empty or too long tag or control characters."""
    require_live_contact(conn, contact_id)
    add_tags(conn, ctx.clock, contact_id, [tag])
    return get_contact(conn, contact_id)


@router.delete("/{contact_id}/tags/{tag:path}", response_model=Contact)
def delete_tag(contact_id: ContactId, tag: str, conn: Conn, ctx: Ctx) -> Contact:
    """Detach a tag (idempotent: removing a tag the contact lacks is not an error)."""
    require_live_contact(conn, contact_id)
    remove_tag(conn, ctx.clock, contact_id, tag)
    return get_contact(conn, contact_id)


@router.post("/{contact_id}/consent", status_code=201, response_model=ConsentRecord)
def post_consent(
    contact_id: ContactId, body: ConsentIn, conn: Conn, ctx: Ctx, key: AdminKey
) -> ConsentRecord:
    """Record a consent decision with its evidence; it becomes the contact's email_consent."""
    return record_consent(
        conn,
        ctx.clock,
        contact_id,
        status=body.status,
        source=body.source,
        source_ref=f"api:{key.prefix}",
        text_shown=body.text_shown,
        ip=str(body.ip) if body.ip is not None else None,
        user_agent=body.user_agent,
    )


@router.get("/{contact_id}/consent", response_model=Page[ConsentRecord])
def get_consent(contact_id: ContactId, conn: Conn) -> Page[ConsentRecord]:
    """Every consent decision of the contact, newest first (one page: the history is short)."""
    require_live_contact(conn, contact_id)
    return Page[ConsentRecord](items=consent_history(conn, contact_id), next=None)


@router.post("/{contact_id}/unsubscribe", response_model=Contact)
def post_unsubscribe(contact_id: ContactId, conn: Conn, ctx: Ctx, key: AdminKey) -> Contact:
    """Opt the contact out of marketing email and record the withdrawal of consent."""
    unsubscribe(conn, ctx.clock, contact_id, source_ref=f"api:{key.prefix}")
    return get_contact(conn, contact_id)


@router.delete("/{contact_id}/unsubscribe", response_model=Contact)
def delete_unsubscribe(contact_id: ContactId, conn: Conn, ctx: Ctx) -> Contact:
    """Clear the opt-out flag (this does not grant consent)."""
    resubscribe(conn, ctx.clock, contact_id)
    return get_contact(conn, contact_id)


@router.post("/{contact_id}/suppress", response_model=Contact)
def post_suppress(contact_id: ContactId, body: SuppressIn, conn: Conn, ctx: Ctx) -> Contact:
    """Block all email to the contact, with the reason."""
    suppress(conn, ctx.clock, contact_id, reason=body.reason)
    return get_contact(conn, contact_id)


@router.delete("/{contact_id}/suppress", response_model=Contact)
def delete_suppress(contact_id: ContactId, conn: Conn, ctx: Ctx) -> Contact:
    """Lift the suppression."""
    unsuppress(conn, ctx.clock, contact_id)
    return get_contact(conn, contact_id)
