"""The contacts REST API under /api/: create, find, search, read, update, timeline, merge.

Tags, consent and opt-out flags live in ``api_flags``, accounts in ``api_accounts``, custom
field definitions in ``api_customfields``; ``router`` here includes them all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from ekiden.contacts.api_accounts import router as accounts_router
from ekiden.contacts.api_customfields import router as custom_fields_router
from ekiden.contacts.api_flags import router as flags_router
from ekiden.contacts.api_models import ContactCreate, ContactId, ContactPatch, MergeIn, MergeOut
from ekiden.contacts.merge import merge_contacts
from ekiden.contacts.models import Contact, ContactChanges
from ekiden.contacts.search import ContactFilter, search_contacts
from ekiden.contacts.service import (
    create_contact,
    edit_contact,
    find_contact_id,
    get_contact,
    require_live_contact,
)
from ekiden.errors import Invalid
from ekiden.tracking.timeline import MachineFilter, TimelineEvent, contact_timeline
from ekiden.web.deps import AdminKey, Conn, Ctx, require_admin
from ekiden.web.pagination import DEFAULT_LIMIT, Page, check_limit

router = APIRouter(prefix="/api", dependencies=[Depends(require_admin)])
contacts_router = APIRouter(prefix="/contacts", tags=["contacts"])

Limit = Annotated[int, Query(description="Items per page (1–500).")]
Cursor = Annotated[str | None, Query(description="The `next` of the previous page.")]


def _changes(body: ContactChanges) -> ContactChanges:
    """The standard and custom fields of a create / patch body as ContactChanges."""
    fields = {name: getattr(body, name) for name in body.model_fields_set}
    return ContactChanges.model_validate(
        {k: v for k, v in fields.items() if k in ContactChanges.model_fields}
    )


@contacts_router.post("", status_code=201, response_model=Contact)
def create(body: ContactCreate, conn: Conn, ctx: Ctx, key: AdminKey) -> Contact:
    """Create a contact; 409 when its email or user id already identifies a contact."""
    contact_id = create_contact(
        conn,
        ctx.clock,
        email=body.email,
        external_id=body.user_id,
        changes=_changes(body),
        source_ref=f"api:{key.prefix}",
        tags=body.tags,
    )
    return get_contact(conn, contact_id)


@contacts_router.get("", response_model=Page[Contact])
def search(
    conn: Conn,
    email: Annotated[str | None, Query(description="Exact (normalised) email look-up.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Substring search.")] = None,
    tag: str | None = None,
    owner_id: int | None = None,
    account_id: int | None = None,
    updated_since: datetime | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[Contact]:
    """Find by ``email`` (also an address absorbed by a merge), or search and page."""
    check_limit(limit)
    if email is not None:
        found = find_contact_id(conn, email=email) if email.strip() else None
        return Page[Contact](items=[get_contact(conn, found)] if found else [], next=None)
    where = ContactFilter(
        q=q, tag=tag, owner_id=owner_id, account_id=account_id, updated_since=updated_since
    )
    return search_contacts(conn, where, limit=limit, cursor=cursor)


@contacts_router.post("/merge", response_model=MergeOut)
def merge(body: MergeIn, conn: Conn, ctx: Ctx, key: AdminKey) -> MergeOut:
    """Merge ``loser_id`` into ``winner_id`` (see docs/API.md for what moves)."""
    result = merge_contacts(
        conn,
        ctx.clock,
        winner_id=body.winner_id,
        loser_id=body.loser_id,
        merged_by=f"api:{key.prefix}",
    )
    return MergeOut(
        merge_id=result.merge_id,
        loser_id=result.loser_id,
        winner=get_contact(conn, result.winner_id),
        moved=result.moved,
    )


@contacts_router.get("/{contact_id}", response_model=Contact)
def read(contact_id: ContactId, conn: Conn) -> Contact:
    """The contact; a merged-away id answers 404 with code "merged" naming the winner."""
    return get_contact(conn, contact_id)


@contacts_router.patch("/{contact_id}", response_model=Contact)
def patch(contact_id: ContactId, body: ContactPatch, conn: Conn, ctx: Ctx) -> Contact:
    """Change some fields; absent fields stay as they are, null clears a field."""
    if "email" in body.model_fields_set and body.email is None:
        raise Invalid("email cannot be removed, only changed", code="invalid_email")
    return edit_contact(conn, ctx.clock, contact_id, _changes(body), new_email=body.email)


@contacts_router.get("/{contact_id}/events", response_model=Page[TimelineEvent])
def timeline(
    contact_id: ContactId,
    conn: Conn,
    types: Annotated[
        list[str] | None, Query(alias="type", description="Only these event types (repeatable).")
    ] = None,
    machine: Annotated[MachineFilter, Query(description="Machine activity.")] = "include",
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[TimelineEvent]:
    """The contact's events, newest first; every event carries its ``machine`` flag."""
    check_limit(limit)
    require_live_contact(conn, contact_id)
    return contact_timeline(
        conn, contact_id, types=types, machine=machine, limit=limit, cursor=cursor
    )


contacts_router.include_router(flags_router)
router.include_router(contacts_router)
router.include_router(accounts_router)
router.include_router(custom_fields_router)
