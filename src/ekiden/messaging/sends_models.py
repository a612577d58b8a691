"""What the sends API takes and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Category = Literal["marketing", "transactional"]
AbMetric = Literal["clicks", "opens"]


class Audience(BaseModel):
    """Exactly one of: a contact, a static list, a dynamic segment, a filter condition."""

    model_config = ConfigDict(extra="forbid")
    contact: int | None = Field(None, description="one contact id")
    list: str | None = Field(None, description="slug of a static list")
    segment: str | None = Field(None, description="slug of a dynamic segment")
    filter: dict[str, Any] | None = Field(None, description="a filter-language condition")

    @model_validator(mode="after")
    def _exactly_one(self) -> Audience:
        given = [name for name in ("contact", "list", "segment", "filter") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of contact, list, segment or filter")
        return self


class Variant(BaseModel):
    """One arm of an A/B test: another subject, another template version, or both."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    subject: str | None = Field(None, min_length=1, max_length=500)
    template_version: int | None = Field(None, ge=1)


class AbTest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variants: list[Variant] = Field(min_length=2, max_length=5)
    test_share: float = Field(
        0.2, gt=0, le=1, description="share of the audience that gets a variant during the test"
    )
    metric: AbMetric = Field("clicks", description="human unique clicks or opens per message")
    window_hours: float = Field(4, gt=0, le=24 * 14, description="how long the test runs")

    @model_validator(mode="after")
    def _distinct_names(self) -> AbTest:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be distinct")
        return self


class SendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template: str = Field(min_length=1, max_length=100, description="the email template's key")
    template_version: int | None = Field(
        None, ge=1, description="pin this version; default the template's current version"
    )
    audience: Audience
    category: Category | None = Field(None, description="default: the template's category")
    name: str = Field("", max_length=200)
    scheduled_at: datetime | None = Field(None, description="send later; default now")
    ab: AbTest | None = None


class Send(BaseModel):
    id: int
    name: str
    template: str
    template_version: int
    category: str
    audience: dict[str, Any]
    status: str
    scheduled_at: datetime
    created_at: datetime
    dispatched_at: datetime | None
    cancelled_at: datetime | None
    error: str | None = Field(description="why the send failed (status failed)")
    recipients: int
    ab: dict[str, Any] | None
    ab_winner: str | None
    ab_decided_at: datetime | None
    ab_result: dict[str, Any] | None
