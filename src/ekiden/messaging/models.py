"""Typed shapes of email templates as services and the API hand them around."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ekiden.contacts.emails import normalise_email
from ekiden.errors import Invalid

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_PART = 512 * 1024


def _address(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return normalise_email(value)
    except Invalid as exc:
        raise ValueError(exc.message) from None


class EmailTemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="lower-case letters, digits, - and _; used in links and UTM")
    name: str = Field(min_length=1, max_length=200)
    category: str = Field("marketing", description="marketing | transactional")
    subject: str = Field(min_length=1, max_length=1000)
    preheader: str = Field("", max_length=1000)
    html: str = Field(min_length=1, max_length=MAX_PART)
    text: str | None = Field(None, max_length=MAX_PART, description="None: made from the HTML")
    sender_name: str | None = Field(None, max_length=200)
    sender_address: str | None = Field(None, max_length=320)
    topic: str | None = Field(None, description="a subscription topic's key (marketing only)")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY.match(value):
            raise ValueError(
                "use 1-100 lower-case letters, digits, - and _, starting with a letter or digit"
            )
        return value

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        if value not in ("marketing", "transactional"):
            raise ValueError("must be marketing or transactional")
        return value

    @field_validator("sender_address")
    @classmethod
    def _sender_address(cls, value: str | None) -> str | None:
        return _address(value)


class EmailTemplateChanges(BaseModel):
    """A partial update; every given part replaces the current one (a new version)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    category: str | None = None
    subject: str | None = Field(None, min_length=1, max_length=1000)
    preheader: str | None = Field(None, max_length=1000)
    html: str | None = Field(None, min_length=1, max_length=MAX_PART)
    text: str | None = Field(None, max_length=MAX_PART)
    sender_name: str | None = Field(None, max_length=200)
    sender_address: str | None = Field(None, max_length=320)
    topic: str | None = Field(None, description="a topic's key; null removes the topic")

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        if value is not None and value not in ("marketing", "transactional"):
            raise ValueError("must be marketing or transactional")
        return value

    @field_validator("sender_address")
    @classmethod
    def _sender_address(cls, value: str | None) -> str | None:
        return _address(value)


class EmailTemplate(BaseModel):
    id: int
    key: str
    name: str
    category: str
    version: int
    subject: str
    preheader: str
    html: str
    text: str | None
    sender_name: str | None
    sender_address: str | None
    topic: str | None = None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


@dataclass(frozen=True)
class TemplateVersion:
    """One saved version of a template: exactly what a send renders."""

    template_id: int
    key: str
    version: int
    category: str
    subject: str
    preheader: str
    html: str
    text: str | None
    sender_name: str | None
    sender_address: str | None


class Preview(BaseModel):
    subject: str
    preheader: str
    html: str
    text: str
    from_: str = Field(alias="from")
    to: str

    model_config = ConfigDict(populate_by_name=True)


# --- subscription topics ---


class Localized(BaseModel):
    """A text in Japanese and English."""

    model_config = ConfigDict(extra="forbid")

    ja: str = Field(max_length=1000)
    en: str = Field(max_length=1000)


def _topic_name(value: Localized) -> Localized:
    for locale in ("ja", "en"):
        if not getattr(value, locale).strip():
            raise ValueError(f"the {locale} name must not be empty")
    return value


class TopicIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="lower-case letters, digits, - and _, e.g. newsletter")
    name: Localized = Field(description='{"ja": "ニュースレター", "en": "Newsletter"}')
    description: Localized = Field(
        default_factory=lambda: Localized(ja="", en=""), description="shown under the name"
    )
    default_subscribed: bool = Field(
        True, description="whether contacts who never chose get this topic's email"
    )
    position: int = Field(0, ge=0, le=10_000, description="order on the preference page")

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY.match(value):
            raise ValueError(
                "use 1-100 lower-case letters, digits, - and _, starting with a letter or digit"
            )
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: Localized) -> Localized:
        return _topic_name(value)


class TopicChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Localized | None = None
    description: Localized | None = None
    default_subscribed: bool | None = None
    position: int | None = Field(None, ge=0, le=10_000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: Localized | None) -> Localized | None:
        return None if value is None else _topic_name(value)


class Topic(BaseModel):
    id: int
    key: str
    name: Localized
    description: Localized
    default_subscribed: bool
    position: int
    templates: list[str] = Field(description="keys of the live templates in this topic")
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


class ContactTopic(BaseModel):
    """A contact's state for one topic: their own choice, else the topic's default."""

    topic: str
    name: Localized
    description: Localized
    subscribed: bool
    chosen: bool = Field(description="true when the contact chose; false: the default applies")
    source: str | None
    source_ref: str | None
    changed_at: datetime | None


class TopicChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscribed: bool
    source_ref: str | None = Field(None, max_length=500, description="e.g. a support ticket")
