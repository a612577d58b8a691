"""Accounts (B2B companies) under /api/accounts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ekiden.contacts.accounts import (
    Account,
    AccountChanges,
    create_account,
    get_account,
    list_accounts,
    update_account,
)
from ekiden.contacts.api_models import MAX_ID
from ekiden.contacts.models import Contact
from ekiden.contacts.search import ContactFilter, search_contacts
from ekiden.web.deps import Conn, Ctx
from ekiden.web.pagination import DEFAULT_LIMIT, Page, check_limit

router = APIRouter(prefix="/accounts", tags=["accounts"])
AccountId = Annotated[int, Path(ge=1, le=MAX_ID, description="The account's id.")]


@router.post("", status_code=201, response_model=Account)
def create(body: AccountChanges, conn: Conn, ctx: Ctx) -> Account:
    """Create an account (``name`` required); 409 when another account has the domain."""
    return create_account(conn, ctx.clock, body)


@router.get("", response_model=Page[Account])
def search(
    conn: Conn,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page[Account]:
    """Accounts in id order; ``q`` matches name or domain."""
    return list_accounts(conn, q=q, limit=check_limit(limit), cursor=cursor)


@router.get("/{account_id}", response_model=Account)
def read(account_id: AccountId, conn: Conn) -> Account:
    return get_account(conn, account_id)


@router.patch("/{account_id}", response_model=Account)
def patch(account_id: AccountId, body: AccountChanges, conn: Conn, ctx: Ctx) -> Account:
    """Change some fields; absent fields stay, null clears (the name cannot be cleared)."""
    return update_account(conn, ctx.clock, account_id, body)


@router.get("/{account_id}/contacts", response_model=Page[Contact])
def contacts_of(
    account_id: AccountId, conn: Conn, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Contact]:
    """The account's live contacts, paged."""
    get_account(conn, account_id)
    where = ContactFilter(account_id=account_id)
    return search_contacts(conn, where, limit=check_limit(limit), cursor=cursor)
