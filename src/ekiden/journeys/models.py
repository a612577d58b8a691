"""What the journeys API and CLI hand out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["draft", "active", "paused", "archived"]
State = Literal["running", "waiting", "completed", "exited", "converted", "failed"]
LIVE_STATES = ("running", "waiting")


class JourneyOut(BaseModel):
    key: str
    name: str
    status: Status
    version: int = Field(description="the version new enrolments get")
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    definition: dict[str, Any]


class StepOut(BaseModel):
    node: str
    node_type: str
    result: str = Field(description="the port taken, or waiting | exited | converted | failed")
    at: datetime
    detail: dict[str, Any]


class EnrolmentOut(BaseModel):
    id: int
    journey: str
    version: int
    contact_id: int
    node: str
    state: State
    due_at: datetime | None
    entered_at: datetime
    ended_at: datetime | None
    trigger: str
    last_error: str | None
    steps: list[StepOut] = Field(default_factory=list)


class EnrolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_ids: list[int] = Field(min_length=1, max_length=10_000)


class EnrolOut(BaseModel):
    enrolled: list[int] = Field(description="contacts enrolled now")
    skipped: list[int] = Field(
        description="contacts the re-entry policy, entry condition or limit kept out"
    )


class NodeStats(BaseModel):
    node: str
    type: str
    entered: int
    waiting: int
    passed: int
    exited: int
    converted: int
    failed: int


class JourneyStats(BaseModel):
    key: str
    enrolled: int
    live: int
    completed: int
    exited: int
    converted: int
    failed: int
    nodes: list[NodeStats]


class OnsiteMessageOut(BaseModel):
    id: int
    journey: str
    title: str | None
    message: str
    link: str | None = None
    link_text: str | None = None
    show: str = "once"  # once | until_dismissed
    shown_count: int = 0
    shown_at: datetime | None = None  # first shown
    dismissed_at: datetime | None = None
    clicked_at: datetime | None = None
    created_at: datetime
    expires_at: datetime | None


class CouponOut(BaseModel):
    code: str
    journey: str
    field: str
    issued_at: datetime
    expires_at: datetime | None
