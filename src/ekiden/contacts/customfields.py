"""Custom field definitions and validation of custom values against them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.contacts.emails import normalise_email
from ekiden.contacts.tables import custom_fields
from ekiden.errors import Conflict, EkidenError, Invalid, NotFound

FIELD_TYPES = (
    "text",
    "number",
    "integer",
    "boolean",
    "date",
    "datetime",
    "choice",
    "multi_choice",
    "email",
    "url",
)
CUSTOM_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class CustomFieldDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="lower_snake_case identifier, e.g. annual_budget")
    label: str = Field(min_length=1, max_length=200)
    label_en: str | None = Field(None, max_length=200)
    type: str
    choices: list[str] | None = None
    required: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _KEY.match(value):
            raise ValueError("must be lower_snake_case: a letter, then letters, digits or _")
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in FIELD_TYPES:
            raise ValueError(f"must be one of {', '.join(FIELD_TYPES)}")
        return value

    @model_validator(mode="after")
    def _choices(self) -> CustomFieldDefinition:
        if self.type in ("choice", "multi_choice") and not self.choices:
            raise ValueError(f"a {self.type} field needs a non-empty list of choices")
        if self.type not in ("choice", "multi_choice") and self.choices:
            raise ValueError("only choice and multi_choice fields take choices")
        return self


def define_field(conn: Connection, clock: Clock, definition: CustomFieldDefinition) -> None:
    try:
        with conn.begin_nested():
            conn.execute(
                insert(custom_fields).values(**definition.model_dump(), created_at=clock.now())
            )
    except IntegrityError:
        raise Conflict(f"custom field {definition.key!r} already exists") from None


def list_fields(conn: Connection) -> list[CustomFieldDefinition]:
    rows = conn.execute(select(custom_fields).order_by(custom_fields.c.key)).mappings()
    return [
        CustomFieldDefinition.model_validate({k: v for k, v in r.items() if k != "created_at"})
        for r in rows
    ]


def delete_field(conn: Connection, key: str) -> None:
    """Remove the definition. Stored values stay in contacts' history (they are not erased)."""
    if conn.execute(delete(custom_fields).where(custom_fields.c.key == key)).rowcount == 0:
        raise NotFound(f"no custom field {key!r}")


def coerce_value(field: CustomFieldDefinition, value: Any) -> Any:
    """The value converted to the field's type, JSON-storable; raise ValueError why not."""
    if value is None or value == "":
        return None
    kind = field.type
    if kind == "text":
        text = str(value)
        if len(text) > 10_000:
            raise ValueError("is longer than 10,000 characters")
        return text
    if kind == "integer":
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("must be a whole number")
        try:
            return int(str(value).replace(",", "").strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            number = float(str(value).replace(",", "").strip())
        except ValueError:
            raise ValueError("must be a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number")
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("true", "yes", "1", "on", "はい"):
            return True
        if lowered in ("false", "no", "0", "off", "いいえ"):
            return False
        raise ValueError("must be true or false")
    if kind == "date":
        try:
            return date.fromisoformat(str(value).strip().replace("/", "-")).isoformat()
        except ValueError:
            raise ValueError("must be a date such as 2026-04-01") from None
    if kind == "datetime":
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError("must be an ISO 8601 date-time") from None
        if moment.tzinfo is None:
            raise ValueError("must include a time zone offset, e.g. +09:00")
        # one fixed UTC format, so stored values sort and compare as text in SQL
        return moment.astimezone(UTC).strftime(CUSTOM_DATETIME_FORMAT)
    if kind == "choice":
        if str(value) not in (field.choices or []):
            raise ValueError(f"must be one of {', '.join(field.choices or [])}")
        return str(value)
    if kind == "multi_choice":
        items = value if isinstance(value, list) else [v.strip() for v in str(value).split(";")]
        bad = [v for v in items if str(v) not in (field.choices or [])]
        if bad:
            raise ValueError(f"has values not among the choices: {', '.join(map(str, bad))}")
        return [str(v) for v in items]
    if kind == "email":
        try:
            return normalise_email(str(value))
        except EkidenError:
            raise ValueError("must be a valid email address") from None
    if kind == "url":
        text = str(value).strip()
        if not re.match(r"^https?://[^\s/]+", text):
            raise ValueError("must be an http:// or https:// URL")
        return text
    raise ValueError(f"has an unknown type {kind}")  # pragma: no cover - guarded by the model


def validate_custom(
    conn: Connection, values: dict[str, Any], *, require: bool = False
) -> dict[str, Any]:
    """Check ``values`` against the definitions; return them coerced.

    Unknown keys and bad values raise Invalid naming every offending field. With ``require``
    (creating a contact by API, form or import) every required field must be given; events
    from trackers never enforce it, so behaviour is never dropped for a missing attribute.
    """
    fields = {f.key: f for f in list_fields(conn)} if values or require else {}
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            problems[key] = "is not a defined custom field"
            continue
        try:
            clean[key] = coerce_value(field, value)
        except ValueError as exc:
            problems[key] = str(exc)
    if require:
        for key, field in fields.items():
            if field.required and clean.get(key) is None and key not in problems:
                problems[key] = "is required"
    if problems:
        message = "; ".join(f"custom.{k} {v}" for k, v in problems.items())
        raise Invalid(message, code="invalid_custom_field", details=problems)
    return clean
