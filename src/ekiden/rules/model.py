"""The filter language's syntax tree, parsed and validated from JSON or YAML.

A filter is one of::

    {"all": [F, ...]}            every sub-filter holds (an empty list holds)
    {"any": [F, ...]}            at least one holds (an empty list does not)
    {"not": F}
    {"field": "job_title", "op": "in", "value": ["部長", "本部長"]}
    {"tag": "vip"}                                   the contact has the tag
    {"event": "page", "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}],
     "min": 2, "within_days": 30}                    behaviour, counted
    {"event": "page_dwell", "where": [...], "sum": "dwell_ms", "min": 180000}   behaviour, summed
    {"email": "open_rate", "op": "gte", "value": 0.7, "within_days": 90}        email engagement
    {"segment": "hot-prospects"}                     member of a dynamic segment
    {"list": "tradeshow-2026"}                       on a static list

Validation errors name the offending part by its path, e.g. ``all[1].where[0].op``.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ekiden.errors import Invalid

# Operators and the value each expects.
COMPARE_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
TEXT_OPS = ("contains", "not_contains", "starts_with", "ends_with")
SET_OPS = ("in", "not_in")
PRESENCE_OPS = ("is_set", "is_empty")
RELATIVE_OPS = ("within_last_days", "more_than_days_ago")
OPS = COMPARE_OPS + TEXT_OPS + SET_OPS + PRESENCE_OPS + RELATIVE_OPS + ("between",)

Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Comparison(_Strict):
    """``op`` applied to a value; shared by field and event-property conditions."""

    op: Literal[
        "eq", "ne", "gt", "gte", "lt", "lte",
        "contains", "not_contains", "starts_with", "ends_with",
        "in", "not_in", "is_set", "is_empty",
        "within_last_days", "more_than_days_ago", "between",
    ]  # fmt: skip
    value: Scalar | list[Scalar] | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Comparison:
        op, value = self.op, self.value
        if op in PRESENCE_OPS:
            if value is not None:
                raise ValueError(f"{op} takes no value")
        elif op in SET_OPS:
            if not isinstance(value, list) or not value:
                raise ValueError(f"{op} needs a non-empty list of values")
        elif op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise ValueError("between needs a list of two values [low, high]")
        elif op in RELATIVE_OPS:
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{op} needs a number of days (0 or more)")
        elif op in TEXT_OPS:
            if not isinstance(value, str) or value == "":
                raise ValueError(f"{op} needs a non-empty text value")
        elif value is None or isinstance(value, list):
            raise ValueError(f"{op} needs a single value")
        if isinstance(value, list) and len({_kind_of(v) for v in value}) > 1:
            raise ValueError(f"the values of {op} must all be of one type (text, number or bool)")
        return self


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else "text"


class FieldCondition(Comparison):
    field: str = Field(description="contact field, custom.<key> or account.<field>")


class PropertyCondition(Comparison):
    property: str = Field(
        min_length=1, max_length=200, description="path, url, name or a property key"
    )


class TagCondition(_Strict):
    tag: str = Field(min_length=1, max_length=100)


class SegmentCondition(_Strict):
    """The contact is currently a member of the dynamic segment with this slug."""

    segment: str = Field(min_length=1, max_length=100)


class ListCondition(_Strict):
    """The contact is on the static list with this slug."""

    list: str = Field(min_length=1, max_length=100)


class EventCondition(_Strict):
    """Did the contact do ``event`` (matching ``where``) at least ``min`` / at most ``max``
    times — or, with ``sum``, with a total of at least ``min`` / at most ``max`` — within the
    last ``within_days`` days or since ``since``? Machine activity is excluded unless
    ``include_machine``."""

    event: str = Field(min_length=1, max_length=200)
    where: list[PropertyCondition] = Field(default_factory=list)
    sum: Literal["dwell_ms"] | None = None
    min: float | None = None
    max: float | None = None
    within_days: float | None = Field(None, gt=0)
    since: datetime | date | None = None
    include_machine: bool = False

    @field_validator("since", mode="before")
    @classmethod
    def _since(cls, value: Any) -> Any:
        # "2026-04-01" is a day (its midnight in the configured time zone), not a date-time
        if isinstance(value, str) and len(value) == 10:
            return date.fromisoformat(value)
        return value

    @model_validator(mode="after")
    def _bounds(self) -> EventCondition:
        if self.min is not None and self.min < 0:
            raise ValueError("min must be 0 or more")
        if self.max is not None and self.max < 0:
            raise ValueError("max must be 0 or more")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max: no contact can match")
        if self.within_days is not None and self.since is not None:
            raise ValueError("give within_days or since, not both")
        if isinstance(self.since, datetime) and self.since.tzinfo is None:
            raise ValueError("since needs a time zone offset, e.g. 2026-04-01T00:00:00+09:00")
        return self

    @property
    def lower(self) -> float:
        """The effective lower bound: at least once unless min or max says otherwise."""
        if self.min is not None:
            return self.min
        return 0 if self.max is not None else 1


class EmailEngagementCondition(_Strict):
    """Per-contact email engagement over deliveries in the window (human activity only).

    ``open_rate`` / ``click_rate``: share of delivered emails opened / clicked (0..1);
    ``median_minutes_to_open``: median delay from delivery to first open of opened emails.
    A contact with fewer than ``min_delivered`` deliveries never matches.
    """

    email: Literal["open_rate", "click_rate", "median_minutes_to_open"]
    op: Literal["gt", "gte", "lt", "lte"]
    value: float
    within_days: float | None = Field(None, gt=0)
    min_delivered: int = Field(1, ge=1)


class All(_Strict):
    all: list[Filter]


class AnyOf(_Strict):
    any: list[Filter]


class Not(_Strict):
    not_: Filter = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


_TAGS = ("all", "any", "not", "field", "tag", "event", "email", "segment", "list")


def _kind(data: Any) -> str | None:
    if isinstance(data, dict):
        for key in _TAGS:
            if key in data:
                return key
        return None
    kinds: dict[type, str] = {
        All: "all",
        AnyOf: "any",
        Not: "not",
        FieldCondition: "field",
        TagCondition: "tag",
        EventCondition: "event",
        EmailEngagementCondition: "email",
        SegmentCondition: "segment",
        ListCondition: "list",
    }
    return kinds.get(type(data))


Filter = Annotated[
    (
        Annotated[All, Tag("all")]
        | Annotated[AnyOf, Tag("any")]
        | Annotated[Not, Tag("not")]
        | Annotated[FieldCondition, Tag("field")]
        | Annotated[TagCondition, Tag("tag")]
        | Annotated[EventCondition, Tag("event")]
        | Annotated[EmailEngagementCondition, Tag("email")]
        | Annotated[SegmentCondition, Tag("segment")]
        | Annotated[ListCondition, Tag("list")]
    ),
    Discriminator(
        _kind,
        custom_error_type="unknown_condition",
        custom_error_message="not a condition: expected one of the keys all, any, not, "
        "field, tag, event, email, segment, list",
    ),
]

All.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()
_adapter: TypeAdapter[Filter] = TypeAdapter(Filter)


def _path(loc: tuple[Any, ...]) -> str:
    """``('all', 'all', 1, 'event', 'where', 0, 'op')`` -> ``all[1].where[0].op``: pydantic
    puts the union's tag before each condition's own keys; say each key once."""
    out = ""
    expect_tag = True
    previous: Any = None
    for part in loc:
        if expect_tag and part in _TAGS:
            expect_tag = False
            continue
        if isinstance(part, int):
            out += f"[{part}]"
            expect_tag = previous in ("all", "any")
        else:
            out += f".{part}" if out else str(part)
            expect_tag = part == "not"
        previous = part
    return out or "(root)"


def parse_filter(data: Any) -> Filter:
    """Validate a filter given as a dict, a JSON string or a YAML string.

    Raises Invalid whose message names each offending part by path.
    """
    if isinstance(data, str | bytes):
        try:
            data = yaml.safe_load(data)  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise Invalid(f"the filter is neither valid JSON nor YAML: {exc}") from None
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        problems = [f"{_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise Invalid(
            "invalid filter: " + "; ".join(problems[:8]), code="invalid_filter", details=problems
        ) from None


def filter_to_json(flt: Filter) -> str:
    return json.dumps(_adapter.dump_python(flt, by_alias=True, exclude_none=True, mode="json"))
