"""Request and response bodies of the contacts REST API (one pydantic model per request)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress

from ekiden.contacts.models import Contact, ContactChanges

# Ids are 64-bit; a larger number is "not found" territory but must not reach the database.
MAX_ID = 2**63 - 1
ContactId = Annotated[int, Path(ge=1, le=MAX_ID, description="The contact's id.")]


class ContactCreate(ContactChanges):
    """A new contact: an email or a user id (or both), standard fields, custom values, tags."""

    email: str | None = Field(None, max_length=320)
    user_id: str | None = Field(None, min_length=1, max_length=255, description="Your own id")
    tags: list[str] = Field(default_factory=list, max_length=100)


class ContactPatch(ContactChanges):
    """Fields to change; absent fields stay, null clears (email cannot be cleared)."""

    email: str | None = Field(None, max_length=320)


class ConsentIn(BaseModel):
    """A consent decision given through the API, with the evidence."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["granted", "withdrawn"]
    source: Literal["api"] = "api"
    text_shown: str | None = Field(None, max_length=10_000)
    ip: IPvAnyAddress | None = None
    user_agent: str | None = Field(None, max_length=1000)


class SuppressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="e.g. hard bounce")


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    winner_id: int = Field(ge=1, le=MAX_ID, description="The contact that stays.")
    loser_id: int = Field(ge=1, le=MAX_ID, description="The contact merged into the winner.")


class MergeOut(BaseModel):
    merge_id: int
    loser_id: int
    winner: Contact
    moved: dict[str, int] = Field(description="How many rows of each kind joined the winner.")
