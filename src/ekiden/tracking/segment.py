"""Segment's HTTP Tracking API messages as typed models.

Field names follow Segment's spec (camelCase) so that payloads from Segment's and RudderStack's
SDKs validate unchanged. Unknown fields are kept (``extra="allow"``) and ignored: SDKs add
their own keys and must never be refused for them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

MessageType = Literal["identify", "track", "page", "screen", "group", "alias"]
MESSAGE_TYPES: tuple[str, ...] = ("identify", "track", "page", "screen", "group", "alias")


def _stringify_id(value: Any) -> Any:
    """Segment accepts numeric ids and treats them as strings; blank ids count as absent."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and not value.strip():
        return None
    return value


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class PageContext(_Loose):
    url: str | None = None
    path: str | None = None
    referrer: str | None = None
    title: str | None = None
    search: str | None = None


class CampaignContext(_Loose):
    source: str | None = None
    medium: str | None = None
    name: str | None = None
    term: str | None = None
    content: str | None = None


class Context(_Loose):
    ip: str | None = Field(None, max_length=45)
    userAgent: str | None = None
    page: PageContext | None = None
    campaign: CampaignContext | None = None


class SegmentMessage(_Loose):
    """One identify / track / page / screen / group / alias call."""

    type: MessageType
    messageId: str | None = Field(None, max_length=200)
    userId: str | None = Field(None, max_length=255)
    anonymousId: str | None = Field(None, max_length=200)
    event: str | None = Field(None, max_length=200)
    name: str | None = None
    category: str | None = None
    groupId: str | None = Field(None, max_length=255)
    previousId: str | None = Field(None, max_length=255)
    traits: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    context: Context = Field(default_factory=Context)
    integrations: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None

    @field_validator("messageId", "userId", "anonymousId", "groupId", "previousId", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return _stringify_id(value)

    @field_validator("traits", "properties", "integrations", "context", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("timestamp", "originalTimestamp", "sentAt")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a time zone (e.g. 2026-11-24T09:00:00Z)")
        return value

    def problem(self) -> str | None:
        """Why the message cannot be stored, or None. Checked per message so that a batch
        error can name the offending index."""
        if self.type == "alias":
            if not self.userId or not self.previousId:
                return "an alias call needs both userId and previousId"
            return None
        if not self.userId and not self.anonymousId:
            return "needs a userId or an anonymousId"
        if self.type == "track" and not self.event:
            return "a track call needs an event name"
        if self.type == "group" and not self.groupId:
            return "a group call needs a groupId"
        return None

    def occurred_at(self, received_at: datetime, batch_sent_at: datetime | None) -> datetime:
        """When it happened, corrected for the sending device's clock skew the way Segment
        does: ``receivedAt - (sentAt - originalTimestamp)``. Server-side SDKs send only
        ``timestamp``; it plays the part of originalTimestamp. Without sentAt the time given
        is used as is; without any time, the time of arrival."""
        original = self.originalTimestamp or self.timestamp
        sent_at = self.sentAt or batch_sent_at
        if original is None:
            return received_at
        if sent_at is None:
            return original
        skew: timedelta = sent_at - original
        return received_at - skew


# Standard Segment traits (and the snake_case / kana spellings Japanese sites use) that map to
# contact fields. Everything else is a custom field when one with that key is defined.
TRAIT_FIELDS: dict[str, str] = {
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
    "firstNameKana": "first_name_kana",
    "first_name_kana": "first_name_kana",
    "lastNameKana": "last_name_kana",
    "last_name_kana": "last_name_kana",
    "phone": "phone",
    "company": "company",
    "title": "job_title",
    "industry": "industry",
    "department": "department",
    "country": "country",
    "timezone": "time_zone",
}


def split_traits(traits: dict[str, Any]) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """(email, contact field values, other traits) of an identify call.

    ``company`` may be a string or Segment's ``{"name": ...}`` object. A ``country`` that is
    not a two-letter ISO code stays among the other traits rather than failing the event.
    """
    email = traits.get("email")
    fields: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for key, value in traits.items():
        if key == "email":
            continue
        field = TRAIT_FIELDS.get(key)
        if field is None or value is None:
            other[key] = value
            continue
        if field == "company" and isinstance(value, dict):
            value = value.get("name")
            if value is None:
                other[key] = traits[key]
                continue
        if isinstance(value, dict | list):
            other[key] = value
            continue
        text = str(value).strip()
        if field == "country":
            if len(text) != 2 or not text.isalpha():
                other[key] = value
                continue
            text = text.upper()
        fields[field] = text
    return (str(email) if email not in (None, "") else None), fields, other


_UTM = ("source", "medium", "name", "term", "content")
_UTM_KEYS = {"source": "utm_source", "medium": "utm_medium", "name": "utm_campaign"}


def page_details(message: SegmentMessage) -> tuple[str | None, dict[str, Any]]:
    """(path, properties) of a page call: url, path, referrer, title and search from the
    page context when the properties lack them, and UTM parameters from the campaign context
    or else from the URL's query string. Properties sent explicitly always win."""
    properties = dict(message.properties)
    page = message.context.page
    if page is not None:
        for key in ("url", "path", "referrer", "title", "search"):
            value = getattr(page, key)
            if value is not None:
                properties.setdefault(key, value)
    url = properties.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    path = properties.get("path")
    if not isinstance(path, str) or not path:
        path = (parts.path or "/") if parts is not None and parts.netloc else None
    campaign = message.context.campaign
    if campaign is not None:
        for key in _UTM:
            value = getattr(campaign, key)
            if value is not None:
                properties.setdefault(_UTM_KEYS.get(key, f"utm_{key}"), value)
    query = parts.query if parts is not None else ""
    if not query and isinstance(properties.get("search"), str):
        query = str(properties["search"]).lstrip("?")
    if query and "utm_" in query:
        for key, values in parse_qs(query).items():
            if key.startswith("utm_") and values:
                properties.setdefault(key, values[0])
    return path, properties
