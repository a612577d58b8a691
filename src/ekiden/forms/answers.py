"""Checking a visitor's answers against the form definition.

Every field is checked and every problem reported at once, keyed by the field's key, so the
hosted page can show each message next to its input. Messages are English source strings
translated when shown (``Problem.text``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection

from ekiden.contacts.customfields import coerce_value, list_fields
from ekiden.contacts.emails import normalise_email
from ekiden.contacts.models import ContactChanges
from ekiden.errors import EkidenError
from ekiden.forms.definition import CONSENT_KEY, FormDefinition, FormField
from ekiden.i18n import gettext

Answers = Mapping[str, Sequence[str]]
AnswerValue = str | int | float | bool | list[str] | None
TRUTHY = ("on", "true", "1", "yes")
PHONE = re.compile(r"^\+?[0-9][0-9()\- ]{4,38}[0-9]$")


@dataclass(frozen=True)
class Problem:
    """What is wrong with one answer, as a translatable message."""

    message: str
    params: dict[str, Any] = field(default_factory=dict)

    def text(self, locale: str) -> str:
        return gettext(locale, self.message, **self.params)


@dataclass
class CheckedAnswers:
    """The answers converted to their types, ready to store, plus what is wrong."""

    email: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, AnswerValue] = field(default_factory=dict)
    consent_given: bool = False
    problems: dict[str, Problem] = field(default_factory=dict)

    def contact_changes(self) -> ContactChanges:
        return ContactChanges(**self.changes, custom=self.custom)


def check_answers(conn: Connection, form: FormDefinition, answers: Answers) -> CheckedAnswers:
    """Convert and check every answer; ``problems`` is empty when all are acceptable."""
    checked = CheckedAnswers()
    custom_defs = {f.key: f for f in list_fields(conn)} if _has_custom(form) else {}
    for f in form.fields:
        raw = [v.strip() for v in answers.get(f.key, ()) if v.strip()]
        if f.type == "hidden" and not raw and f.default:
            raw = [f.default]
        try:
            value = _convert(f, raw)
            if f.target == "custom" and value is not None:
                key = f.key.removeprefix("custom.")
                try:
                    value = coerce_value(custom_defs[key], value)
                except ValueError as exc:
                    raise _Bad(
                        "This value cannot be stored (%(reason)s).", reason=str(exc)
                    ) from None
                except KeyError:
                    raise _Bad("This question is no longer available.") from None
        except _Bad as bad:
            checked.problems[f.key] = bad.problem
            continue
        checked.answers[f.key] = value
        if value is None or value is False:
            continue
        if f.key == "email":
            checked.email = str(value)
        elif f.target == "contact":
            checked.changes[f.key] = value
        elif f.target == "custom":
            checked.custom[f.key.removeprefix("custom.")] = value
    ticked = any(v.strip().lower() in TRUTHY for v in answers.get(CONSENT_KEY, ()))
    checked.consent_given = form.consent is not None and ticked
    if form.consent is not None and form.consent.required and not ticked:
        checked.problems[CONSENT_KEY] = Problem("Please agree to continue.")
    if not checked.problems:
        _check_contact_columns(checked)
    return checked


def _has_custom(form: FormDefinition) -> bool:
    return any(f.target == "custom" for f in form.fields)


class _Bad(Exception):
    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message)
        self.problem = Problem(message, params)


def _convert(f: FormField, raw: list[str]) -> AnswerValue:
    """The typed value of one field's answers; None when left empty."""
    if not raw:
        if f.required:
            raise _Bad("This field is required.")
        return False if f.type == "checkbox" and not f.options else None
    if len(raw) > 1 and not f.multiple:
        raise _Bad("Give a single answer.")
    for item in raw:
        if len(item) > f.limit():
            raise _Bad("Use %(max)s characters or fewer.", max=f.limit())
    if f.type == "checkbox":
        if not f.options:
            if raw[0].lower() not in TRUTHY:
                raise _Bad("Tick the box or leave it empty.")
            return True
        return _choose(f, raw)
    if f.type in ("select", "radio"):
        return _choose(f, raw)[0]
    text = unicodedata.normalize("NFKC", raw[0]) if f.type in ("tel", "number", "date") else raw[0]
    if f.type == "email":
        try:
            return normalise_email(text)
        except EkidenError:
            raise _Bad("Enter a valid email address.") from None
    if f.type == "tel":
        if not PHONE.match(text.replace("‐", "-").replace("ー", "-")):
            raise _Bad("Enter a valid phone number.")
        return text
    if f.type == "number":
        return _number(text)
    if f.type == "date":
        try:
            return date.fromisoformat(text.replace("/", "-")).isoformat()
        except ValueError:
            raise _Bad("Enter a date such as 2026-04-01.") from None
    return raw[0]


def _choose(f: FormField, raw: list[str]) -> list[str]:
    allowed = {o.value for o in f.options}
    if any(item not in allowed for item in raw):
        raise _Bad("Choose from the options shown.")
    return raw


def _number(text: str) -> int | float:
    try:
        number = float(text.replace(",", ""))
    except ValueError:
        raise _Bad("Enter a number.") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _Bad("Enter a number.")
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _check_contact_columns(checked: CheckedAnswers) -> None:
    """Contact columns have their own limits (e.g. a two-letter country code)."""
    try:
        ContactChanges(**checked.changes)
    except ValidationError as exc:
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "_form"
            checked.problems[key] = Problem(
                "This value cannot be stored (%(reason)s).", {"reason": err["msg"]}
            )
