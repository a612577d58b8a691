"""Custom field definitions under /api/custom-fields."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ekiden.contacts.customfields import (
    CustomFieldDefinition,
    define_field,
    delete_field,
    list_fields,
)
from ekiden.web.deps import Conn, Ctx
from ekiden.web.pagination import Page

router = APIRouter(prefix="/custom-fields", tags=["custom fields"])


@router.get("", response_model=Page[CustomFieldDefinition])
def list_definitions(conn: Conn) -> Page[CustomFieldDefinition]:
    """Every definition, by key (one page)."""
    return Page[CustomFieldDefinition](items=list_fields(conn), next=None)


@router.post("", status_code=201, response_model=CustomFieldDefinition)
def define(body: CustomFieldDefinition, conn: Conn, ctx: Ctx) -> CustomFieldDefinition:
    """Define a field; 409 when the key exists, 422 for a bad key, type or choices."""
    define_field(conn, ctx.clock, body)
    return body


@router.delete("/{key}", status_code=204)
def remove(key: str, conn: Conn) -> Response:
    """Remove the definition; values already stored on contacts are kept."""
    delete_field(conn, key)
    return Response(status_code=204)
