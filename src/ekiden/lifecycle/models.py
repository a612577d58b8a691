"""Typed hand-offs of the lifecycle capability (requests, answers, worker results)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

StageKind = Literal["lifecycle", "buying"]
Outcome = Literal["won", "lost"]
MoveSource = Literal["entry", "rule", "api", "feedback", "merge"]
MAX_ID = 2**63 - 1
MAX_POSITION = 1_000_000
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class StageIn(BaseModel):
    """One stage in a configured order. ``key`` is what filters and the API name."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="ascii, lower case: a-z, 0-9, _ (at most 32)")
    name: str = Field(min_length=1, max_length=100, description="Japanese name, e.g. ホット化")
    name_en: str | None = Field(None, max_length=100)
    department: str | None = Field(
        None, max_length=32, description="owning department: marketing, inside_sales, sales…"
    )
    outcome: Outcome | None = Field(
        None, description="won / lost close a contact's way through the stages"
    )
    allow_skip: bool = Field(True, description="may be entered by skipping earlier stages")
    allow_back: bool = Field(False, description="may be left for an earlier stage, by hand")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY_PATTERN.match(value):
            raise ValueError("must be 1 to 32 of a-z, 0-9 and _, starting with a letter")
        return value


class Stage(StageIn):
    position: int


class StagesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stages: list[StageIn] = Field(min_length=2, max_length=30)


class StageState(BaseModel):
    """Where a contact stands now."""

    contact_id: int
    lifecycle_stage: str | None
    lifecycle_stage_at: datetime | None
    buying_stage: str | None
    buying_stage_at: datetime | None


class MoveIn(BaseModel):
    """A manual move (sales sets meeting / won / lost)."""

    model_config = ConfigDict(extra="forbid")

    stage: str = Field(min_length=1, max_length=32)
    kind: StageKind = "lifecycle"
    deal_value: float | None = Field(
        None, ge=0, le=1e15, allow_inf_nan=False, description="only for a won stage"
    )
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. JPY")
    user_id: int | None = Field(None, ge=1, le=MAX_ID, description="the user who made the move")
    note: str | None = Field(None, max_length=2000)


class HistoryEntry(BaseModel):
    id: int
    contact_id: int
    kind: StageKind
    from_stage: str | None
    to_stage: str
    moved_at: datetime
    source: MoveSource
    rule_id: int | None
    moved_by: str | None
    user_id: int | None
    deal_value: float | None
    currency: str | None
    note: str | None


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: StageKind = "lifecycle"
    name: str = Field(min_length=1, max_length=200)
    target: str = Field(min_length=1, max_length=32, description="the stage key moved to")
    filter: dict[str, Any]
    position: int | None = Field(
        None, ge=0, le=MAX_POSITION, description="order of evaluation; default last"
    )
    enabled: bool = True


class RuleChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    target: str | None = Field(None, min_length=1, max_length=32)
    filter: dict[str, Any] | None = None
    position: int | None = Field(None, ge=0, le=MAX_POSITION)
    enabled: bool | None = None


class Rule(BaseModel):
    id: int
    kind: StageKind
    name: str
    target: str
    filter: dict[str, Any]
    position: int
    enabled: bool
    created_at: datetime
    updated_at: datetime
