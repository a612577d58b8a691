"""Typed shapes of contacts as services hand them around (not tied to HTTP)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Standard fields a caller may set; anything else goes to `custom` and must be defined.
STANDARD_FIELDS = (
    "last_name",
    "first_name",
    "last_name_kana",
    "first_name_kana",
    "company",
    "department",
    "job_title",
    "industry",
    "phone",
    "country",
    "time_zone",
)


class ContactChanges(BaseModel):
    """Field values to set on a contact. Unset fields are left as they are."""

    model_config = ConfigDict(extra="forbid")

    last_name: str | None = Field(None, max_length=200)
    first_name: str | None = Field(None, max_length=200)
    last_name_kana: str | None = Field(None, max_length=200)
    first_name_kana: str | None = Field(None, max_length=200)
    company: str | None = Field(None, max_length=300)
    department: str | None = Field(None, max_length=300)
    job_title: str | None = Field(None, max_length=300)
    industry: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=40)
    country: str | None = Field(None, min_length=2, max_length=2)
    time_zone: str | None = Field(None, max_length=64)
    account_id: int | None = None
    owner_id: int | None = None
    custom: dict[str, Any] = Field(default_factory=dict)

    def standard_values(self) -> dict[str, Any]:
        """The standard fields the caller actually set (explicit None clears a field)."""
        return {
            name: getattr(self, name)
            for name in (*STANDARD_FIELDS, "account_id", "owner_id")
            if name in self.model_fields_set
        }


class Contact(BaseModel):
    """A contact as stored (custom values already validated)."""

    id: int
    email: str | None
    external_id: str | None
    last_name: str | None
    first_name: str | None
    last_name_kana: str | None
    first_name_kana: str | None
    company: str | None
    account_id: int | None
    department: str | None
    job_title: str | None
    industry: str | None
    phone: str | None
    country: str | None
    time_zone: str | None
    owner_id: int | None
    custom: dict[str, Any]
    email_consent: str
    unsubscribed_at: datetime | None
    suppressed_at: datetime | None
    suppression_reason: str | None
    source_kind: str | None
    source_ref: str | None
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None
    # current stage keys (ekiden.lifecycle); changed only through the stage API and rules
    lifecycle_stage: str | None = None
    lifecycle_stage_at: datetime | None = None
    buying_stage: str | None = None
    buying_stage_at: datetime | None = None
    tags: list[str] = Field(default_factory=list)
