"""The form definition: what a marketer configures, validated before anything is stored.

``parse_definition`` is the one entry point: it turns untrusted JSON into a FormDefinition or
raises Invalid whose message names every bad part, e.g. ``fields[2].options: a select field
needs options``.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ekiden.contacts.models import STANDARD_FIELDS
from ekiden.errors import Invalid

FormKind = Literal["download", "webinar", "inquiry", "survey", "other"]
FieldType = Literal[
    "text", "email", "tel", "textarea", "select", "radio", "checkbox", "number", "date", "hidden"
]
CHOICE_TYPES = ("select", "radio", "checkbox")
# Contact fields a form may fill; time_zone is not something visitors are asked for.
CONTACT_FIELDS = ("email", *(f for f in STANDARD_FIELDS if f != "time_zone"))
# Types that produce one short text, the only thing a standard contact column holds.
SINGLE_TEXT_TYPES = ("text", "email", "tel", "textarea", "select", "radio", "hidden")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CONSENT_KEY = "consent"

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
QUESTION_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class LocalText(BaseModel):
    """Text shown to visitors: Japanese always, English optional (falls back to Japanese).

    A plain string is accepted as the Japanese text.
    """

    model_config = ConfigDict(extra="forbid")

    ja: str = Field(min_length=1, max_length=5000)
    en: str | None = Field(None, min_length=1, max_length=5000)

    @model_validator(mode="before")
    @classmethod
    def _plain_string(cls, value: Any) -> Any:
        return {"ja": value} if isinstance(value, str) else value

    def get(self, locale: str) -> str:
        return self.en if locale == "en" and self.en else self.ja


class Option(BaseModel):
    """One choice of a select / radio / checkbox field; a plain string is value and label."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=200)
    label: LocalText

    @model_validator(mode="before")
    @classmethod
    def _plain_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"value": value, "label": {"ja": value}}
        if isinstance(value, dict) and "label" not in value and isinstance(value.get("value"), str):
            return {**value, "label": {"ja": value["value"]}}
        return value


class FormField(BaseModel):
    """One input. ``key`` says where the answer goes: a contact field (``email``,
    ``company``…), a defined custom field (``custom.<key>``), or else it is an answer-only
    question kept in the ``form_submitted`` event."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=80)
    type: FieldType = "text"
    label: LocalText
    required: bool = False
    options: list[Option] = Field(default_factory=list, max_length=200)
    max_length: int | None = Field(None, ge=1, le=10_000)
    placeholder: LocalText | None = None
    help: LocalText | None = None
    # the value of a hidden field (e.g. a campaign code); visitors never see it
    default: str | None = Field(None, max_length=1000)

    @property
    def target(self) -> Literal["contact", "custom", "answer"]:
        if self.key in CONTACT_FIELDS:
            return "contact"
        return "custom" if self.key.startswith("custom.") else "answer"

    @property
    def multiple(self) -> bool:
        """A checkbox group with options answers a list; a lone checkbox answers yes/no."""
        return self.type == "checkbox" and bool(self.options)

    def limit(self) -> int:
        """Longest accepted answer (per value), in characters."""
        if self.max_length is not None:
            return self.max_length
        return 10_000 if self.type == "textarea" else 1_000


class ConsentBox(BaseModel):
    """The marketing-email consent checkbox and the exact text shown next to it."""

    model_config = ConfigDict(extra="forbid")

    required: bool = False
    text: LocalText


class Success(BaseModel):
    """What a visitor sees after a successful submission."""

    model_config = ConfigDict(extra="forbid")

    message: LocalText | None = None
    redirect_url: str | None = Field(None, max_length=2000)
    document_url: str | None = Field(None, max_length=2000)
    # download forms: send the visitor straight to the document instead of a thank-you page
    redirect_to_document: bool = False

    @field_validator("redirect_url", "document_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_http_url(value)


class FormDefinition(BaseModel):
    """A whole form as the admin API accepts and returns it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    slug: str
    kind: FormKind
    title: LocalText | None = None
    description: LocalText | None = None
    submit_label: LocalText | None = None
    fields: list[FormField] = Field(min_length=1, max_length=60)
    consent: ConsentBox | None = None
    # name of the hidden trap input; humans leave it empty. null turns the trap off.
    honeypot: str | None = "website_url"
    min_fill_seconds: float = Field(2.0, ge=0, le=600)
    success: Success = Field(default_factory=Success)
    # static lists every person who submits the form is added to (e.g. the webinar's list)
    add_to_lists: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError(
                "must be 1-100 lower-case letters, digits and hyphens, e.g. whitepaper-2026"
            )
        return value

    def field(self, key: str) -> FormField | None:
        return next((f for f in self.fields if f.key == key), None)


def check_http_url(value: str) -> str:
    """``value`` when it is an absolute http(s) URL with a host; ValueError otherwise."""
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if any(c.isspace() or ord(c) < 32 for c in text) or "\\" in text or parts.username:
        raise ValueError("must be a plain http(s) URL without spaces, backslashes or credentials")
    return text


def parse_definition(data: Any) -> FormDefinition:
    """Validate ``data``; Invalid naming every bad part (``details`` lists them) otherwise."""
    try:
        definition = FormDefinition.model_validate(data)
    except ValidationError as exc:
        problems = [(_path(e["loc"]), _clean(e["msg"])) for e in exc.errors()]
    else:
        problems = definition_problems(definition)
    if problems:
        message = "; ".join(f"{path}: {msg}" if path else msg for path, msg in problems)
        details = [{"path": path, "message": msg} for path, msg in problems]
        raise Invalid(message, code="invalid_form", details=details)
    return definition


def definition_problems(form: FormDefinition) -> list[tuple[str, str]]:
    """Rules that span several parts of a definition, each with the path it concerns."""
    problems: list[tuple[str, str]] = []
    reserved = {CONSENT_KEY, *UTM_FIELDS, *([form.honeypot] if form.honeypot else [])}
    seen: set[str] = set()
    for i, f in enumerate(form.fields):
        at = f"fields[{i}]"
        problems += [(f"{at}.{part}", msg) for part, msg in _field_problems(f, reserved)]
        if f.key in seen:
            problems.append((f"{at}.key", f"{f.key!r} is used by an earlier field"))
        seen.add(f.key)
    if "email" not in seen:
        problems.append(("fields", 'a form needs an email field (key "email", type email)'))
    if form.honeypot is not None and not QUESTION_KEY.match(form.honeypot):
        problems.append(("honeypot", "must be lower_snake_case, e.g. website_url"))
    success = form.success
    if form.kind == "download" and not success.document_url:
        problems.append(("success.document_url", "a download form needs the document's URL"))
    if success.redirect_to_document and not success.document_url:
        problems.append(("success.redirect_to_document", "needs success.document_url"))
    if success.redirect_to_document and success.redirect_url:
        problems.append(
            ("success.redirect_url", "choose either redirect_url or redirect_to_document")
        )
    return problems


def _field_problems(f: FormField, reserved: set[str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    name = f.key.removeprefix("custom.")
    if f.key in reserved or f.key.startswith("_"):
        problems.append(("key", f"{f.key!r} is reserved for the form itself"))
    elif not QUESTION_KEY.match(name):
        problems.append(
            ("key", "must be a contact field, custom.<key> or a lower_snake_case question key")
        )
    if f.key == "email":
        if f.type != "email":
            problems.append(("type", "the email field must have type email"))
        if not f.required:
            problems.append(("required", "the email field must be required"))
    elif f.target == "contact" and f.type not in SINGLE_TEXT_TYPES:
        problems.append(("type", f"contact field {f.key} takes one text value, not {f.type}"))
    if f.type in ("select", "radio") and not f.options:
        problems.append(("options", f"a {f.type} field needs options"))
    if f.options and f.type not in CHOICE_TYPES:
        problems.append(("options", "only select, radio and checkbox fields take options"))
    values = [o.value for o in f.options]
    if len(set(values)) != len(values):
        problems.append(("options", "option values must be unique"))
    if f.type == "hidden" and f.required and not f.default:
        problems.append(("default", "a required hidden field needs a default value"))
    return problems


def _path(loc: tuple[int | str, ...]) -> str:
    """("fields", 2, "options") -> "fields[2].options"; validator tags are left out."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part.startswith("function-"):
            out += f".{part}" if out else part
    return out


def _clean(message: str) -> str:
    return message.removeprefix("Value error, ")
