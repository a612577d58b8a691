"""Typed hand-offs for hot-lead definitions, alerts, feedback and the sales call list."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ekiden.contacts.emails import normalise_email
from ekiden.errors import Invalid
from ekiden.lifecycle.models import MAX_ID, MAX_POSITION

HandoffKind = Literal["hot_lead", "upsell"]
TaskStatus = Literal["open", "done", "cancelled"]


def _check_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def _check_emails(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    try:
        return [normalise_email(v) for v in value]
    except Invalid as error:
        raise ValueError(error.message) from None


class DefinitionChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    filter: dict[str, Any] | None = None
    emails: list[str] | None = Field(None, max_length=50)
    webhook_url: str | None = Field(None, max_length=2000)
    assign_owner: bool | None = None
    task_due_days: int | None = Field(None, ge=0, le=365)
    enabled: bool | None = None

    _urls = field_validator("webhook_url")(_check_url)
    _emails = field_validator("emails")(_check_emails)


class DefinitionIn(BaseModel):
    """When a contact starts matching ``filter``, sales is alerted once (until it stops)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    kind: HandoffKind = Field(
        "hot_lead", description="upsell: a customer's signal, for the account owner"
    )
    filter: dict[str, Any]
    emails: list[str] = Field(
        default_factory=list, max_length=50, description="recipients besides the owner"
    )
    webhook_url: str | None = Field(
        None, max_length=2000, description="Slack-compatible incoming webhook; default setting"
    )
    assign_owner: bool = Field(True, description="give an owner to a lead that has none")
    task_due_days: int | None = Field(
        3, ge=0, le=365, description="put a call task due in this many days; null: no task"
    )
    enabled: bool = True

    _urls = field_validator("webhook_url")(_check_url)
    _emails = field_validator("emails")(_check_emails)


class Definition(DefinitionIn):
    id: int
    created_at: datetime
    updated_at: datetime


class Handoff(BaseModel):
    """One alert raised: a contact crossed into a definition."""

    id: int
    definition_key: str
    kind: HandoffKind
    contact_id: int
    crossing: int = Field(description="1 for the first crossing, 2 after re-arming, …")
    raised_at: datetime
    owner_id: int | None
    feedback: Literal["accepted", "rejected"] | None
    feedback_reason: str | None
    feedback_by: str | None
    feedback_at: datetime | None


class FeedbackIn(BaseModel):
    """Sales' verdict on a hand-off (R12)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["accepted", "rejected"]
    reason: str | None = Field(
        None, min_length=1, max_length=2000, description="required when rejected"
    )
    stage: str | None = Field(
        None, max_length=32, description="also move the contact, e.g. back to nurturing"
    )
    user_id: int | None = Field(None, ge=1, le=MAX_ID)


class TerritoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    filter: dict[str, Any]
    user_id: int = Field(ge=1, le=MAX_ID)
    position: int | None = Field(None, ge=0, le=MAX_POSITION)


class Territory(BaseModel):
    id: int
    name: str
    filter: dict[str, Any]
    user_id: int
    position: int
    created_at: datetime


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: int = Field(ge=1, le=MAX_ID)
    title: str = Field(min_length=1, max_length=500)
    kind: Literal["call", "upsell", "follow_up"] = "call"
    owner_id: int | None = Field(None, ge=1, le=MAX_ID)
    due_at: datetime | None = None


class TaskChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TaskStatus | None = None
    outcome: str | None = Field(None, min_length=1, max_length=2000)
    title: str | None = Field(None, min_length=1, max_length=500)
    owner_id: int | None = Field(None, ge=1, le=MAX_ID)
    due_at: datetime | None = None


class Task(BaseModel):
    id: int
    contact_id: int
    handoff_id: int | None
    kind: str
    title: str
    owner_id: int | None
    due_at: datetime | None
    status: TaskStatus
    outcome: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    score: float | None = Field(None, description="the score the list is ordered by")
    scores: dict[str, float] = Field(default_factory=dict)


class DefinitionStats(BaseModel):
    """How the leads a definition produced fared with sales (R12)."""

    definition_key: str
    raised: int = Field(description="alerts raised")
    accepted: int
    rejected: int
    awaiting: int = Field(description="alerts without feedback yet")
    acceptance_rate: float | None = Field(description="accepted / (accepted + rejected)")
    won: int = Field(description="alerted contacts that reached a won stage afterwards")
    rejection_reasons: dict[str, int] = Field(description="the most frequent reasons")
