"""Typed shapes of score definitions and rules, as the API, the CLI and YAML files give them."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ekiden.rules.model import PropertyCondition

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_POINTS = 10_000.0


def _key(value: str) -> str:
    if not KEY.match(value):
        raise ValueError(
            "use 1-100 lower-case letters, digits, - and _, starting with a letter or digit"
        )
    return value


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class EventMatch(BaseModel):
    """Which events earn an event rule's points: each human event of type ``event`` whose
    properties match every ``where`` condition (and, for ``page_dwell``, reports at least
    ``min_dwell_seconds`` of active time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: str = Field(min_length=1, max_length=200)
    where: list[PropertyCondition] = Field(default_factory=list, max_length=20)
    min_dwell_seconds: float | None = Field(None, gt=0, strict=True)


class RuleIn(BaseModel):
    """A rule: points while the contact matches ``when`` (a profile rule) or points for each
    event matching ``event`` (an event rule)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    name: str = Field("", max_length=200)
    points: float = Field(strict=True, description="points awarded; negative points subtract")
    when: dict[str, Any] | None = Field(
        None, description="profile rule: a filter-language condition on the contact"
    )
    event: EventMatch | None = Field(None, description="event rule: the events that score")
    cap_points: float | None = Field(
        None, gt=0, strict=True, description="at most this many points (absolute) per period"
    )
    cap_days: float | None = Field(None, gt=0, strict=True, description="the cap's period")
    half_life_days: float | None = Field(
        None, gt=0, strict=True, description="points lose half their value every N days"
    )
    expires_after_days: float | None = Field(
        None, gt=0, strict=True, description="points count for N days, then nothing"
    )
    enabled: bool = True

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        return _key(value)

    @field_validator("points", "cap_points", "cap_days", "half_life_days", "expires_after_days")
    @classmethod
    def _check_finite(cls, value: float | None) -> float | None:
        return _finite(value)

    @model_validator(mode="after")
    def _shape(self) -> RuleIn:
        if (self.when is None) == (self.event is None):
            raise ValueError("give exactly one of when (a profile rule) or event (an event rule)")
        if self.points == 0 or abs(self.points) > MAX_POINTS:
            raise ValueError(
                f"points must be non-zero and between -{MAX_POINTS:g} and {MAX_POINTS:g}"
            )
        if (self.cap_points is None) != (self.cap_days is None):
            raise ValueError("a cap needs both cap_points and cap_days")
        if self.when is not None and (
            self.cap_points is not None
            or self.half_life_days is not None
            or self.expires_after_days is not None
        ):
            raise ValueError(
                "caps, half_life_days and expires_after_days apply to event rules only: a "
                "profile rule's points count while the contact matches"
            )
        return self

    @property
    def kind(self) -> Literal["profile", "event"]:
        return "profile" if self.when is not None else "event"


class ScoreIn(BaseModel):
    """A whole score definition with its rules (create, replace, validate, YAML files)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    max_points: float | None = Field(None, strict=True, description="the score's upper cap")
    min_points: float | None = Field(None, strict=True, description="the score's lower bound")
    rules: list[RuleIn] = Field(default_factory=list, max_length=500)

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str) -> str:
        return _key(value)

    @field_validator("max_points", "min_points")
    @classmethod
    def _check_finite(cls, value: float | None) -> float | None:
        return _finite(value)

    @model_validator(mode="after")
    def _shape(self) -> ScoreIn:
        if (
            self.max_points is not None
            and self.min_points is not None
            and self.min_points > self.max_points
        ):
            raise ValueError("min_points is larger than max_points")
        seen: set[str] = set()
        for rule in self.rules:
            if rule.key in seen:
                raise ValueError(f"two rules have the key {rule.key!r}")
            seen.add(rule.key)
        return self


class Rule(RuleIn):
    id: int
    created_at: datetime
    updated_at: datetime


class Score(BaseModel):
    id: int
    key: str
    name: str
    description: str
    max_points: float | None
    min_points: float | None
    rules: list[Rule]
    version: int
    built: bool = Field(description="stored values follow the current rules")
    recomputed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def as_input(self) -> ScoreIn:
        """The definition as one would write it (YAML / JSON export)."""
        data = self.model_dump(include={"key", "name", "description", "max_points", "min_points"})
        data["rules"] = [
            RuleIn.model_validate(r.model_dump(exclude={"id", "created_at", "updated_at"}))
            for r in self.rules
        ]
        return ScoreIn.model_validate(data)


class Recomputed(BaseModel):
    scores: int = 0
    contacts: int = Field(0, description="contacts whose value changed")
    seconds: float = 0.0


class AwardOut(BaseModel):
    rule: str
    rule_name: str = Field(description="for a manual award (adjust_score): its reason")
    kind: Literal["profile", "event", "manual"]
    event_id: int | None
    event_type: str | None
    event_path: str | None
    awarded_at: datetime
    points: float = Field(description="points as awarded (after the rule's cap)")
    points_now: float = Field(description="what they count now, after decay or expiry")


class ScoreExplanation(BaseModel):
    key: str
    name: str
    value: float = Field(description="the stored score (0 when the contact has no points)")
    total_now: float = Field(description="sum of points_now before the score's bounds")
    capped: bool = Field(description="the score's max_points / min_points bounded the total")
    awards: list[AwardOut]


class ContactScores(BaseModel):
    contact_id: int
    scores: list[ScoreExplanation]


class HistoryEntry(BaseModel):
    id: int
    score: str
    value: float
    previous: float
    changed_at: datetime
