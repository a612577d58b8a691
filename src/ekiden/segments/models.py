"""Typed shapes of segments and lists as services hand them around."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


def _slug(value: str) -> str:
    if not SLUG.match(value):
        raise ValueError(
            "use 1-100 lower-case letters, digits, - and _, starting with a letter or digit"
        )
    return value


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    filter: dict[str, Any]

    @field_validator("slug")
    @classmethod
    def _check_slug(cls, value: str) -> str:
        return _slug(value)


class SegmentChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    filter: dict[str, Any] | None = None


class Segment(BaseModel):
    id: int
    slug: str
    name: str
    description: str
    filter: dict[str, Any]
    version: int
    time_dependent: bool
    member_count: int
    created_at: datetime
    updated_at: datetime
    refreshed_at: datetime | None
    built: bool = Field(description="membership is stored for the current definition")


class ListIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)

    @field_validator("slug")
    @classmethod
    def _check_slug(cls, value: str) -> str:
        return _slug(value)


class StaticList(BaseModel):
    id: int
    slug: str
    name: str
    description: str
    member_count: int
    created_at: datetime


class Refreshed(BaseModel):
    """What one refresh changed."""

    entered: int = 0
    exited: int = 0
    contacts: int = 0
    segments: int = 0
