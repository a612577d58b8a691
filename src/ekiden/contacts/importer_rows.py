"""Turning one CSV record into the values of one contact, or the reason it is invalid."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ekiden.contacts.emails import normalise_email
from ekiden.contacts.importer_csv import Record
from ekiden.contacts.importer_mapping import IGNORE
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.tags import clean_tag
from ekiden.errors import Invalid

# Leading characters that make Excel treat a cell as a formula; the exporter prefixes such
# values with ' and the importer removes that prefix again, so an export re-imports as is.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NAME_SPLIT = re.compile(r"[ \u3000]+")
_TAG_SPLIT = re.compile(r"[;；、]")
_COUNTRY_ALIASES = {"日本": "JP", "japan": "JP", "にほん": "JP", "にっぽん": "JP"}


@dataclass
class RowProblem:
    line: int
    reason: str
    column: str | None = None
    email: str | None = None


@dataclass
class Candidate:
    """A row that parsed; custom values are still raw (checked once we know new vs existing)."""

    line: int
    email: str
    standard: dict[str, Any]
    custom: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def unescape_cell(value: str) -> str:
    """Trim, and undo the exporter's formula-injection prefix (a ' before = + - @)."""
    text = value.strip()
    if len(text) > 1 and text[0] == "'" and text[1] in FORMULA_STARTS:
        return text[1:]
    return text


def split_name(value: str) -> tuple[str, str | None]:
    """ "山田 太郎" -> ("山田", "太郎"): Japanese order, family name first; split on the first
    (half- or full-width) space. A name without a space is all family name."""
    parts = _NAME_SPLIT.split(value.strip(), maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else None)


def split_tags(value: str) -> list[str]:
    return [t.strip() for t in _TAG_SPLIT.split(value) if t.strip()]


def _country(value: str) -> str:
    code = _COUNTRY_ALIASES.get(value.lower(), value).upper()
    if not re.fullmatch(r"[A-Z]{2}", code):
        raise ValueError("country must be a two-letter ISO 3166 code such as JP")
    return code


def parse_record(
    record: Record, headers: Sequence[str], targets: Sequence[str]
) -> Candidate | RowProblem:
    """The contact values of ``record``; empty cells are simply absent (never clear a value)."""
    extra = [c for c in record.cells[len(targets) :] if c.strip()]
    if extra:
        return RowProblem(
            record.line,
            f"the row has {len(record.cells)} cells but the header has {len(targets)} columns",
        )
    values: dict[str, str] = {}
    column_of: dict[str, str] = {}
    tags: list[str] = []
    for header, target, raw in zip(headers, targets, record.cells, strict=False):
        cell = unescape_cell(raw)
        if target == IGNORE or not cell:
            continue
        if target == "tags":
            tags.extend(split_tags(cell))
            column_of.setdefault("tags", header)
            continue
        values[target] = cell
        column_of[target] = header
    email = values.pop("email", None)
    if email is None:
        return RowProblem(record.line, "missing email", column_of.get("email"))
    try:
        address = normalise_email(email)
    except Invalid as exc:
        return RowProblem(record.line, exc.message, column_of["email"], email)
    try:
        tags = [clean_tag(t) for t in tags]
    except Invalid as exc:
        return RowProblem(record.line, exc.message, column_of.get("tags", "tags"), address)
    for full, (last, first) in (
        ("full_name", ("last_name", "first_name")),
        ("full_name_kana", ("last_name_kana", "first_name_kana")),
    ):
        if full in values:
            family, given = split_name(values.pop(full))
            values.setdefault(last, family)
            if given is not None:
                values.setdefault(first, given)
    custom = {k.removeprefix("custom."): v for k, v in values.items() if k.startswith("custom.")}
    standard = {k: v for k, v in values.items() if not k.startswith("custom.")}
    if "country" in standard:
        try:
            standard["country"] = _country(standard["country"])
        except ValueError as exc:
            return RowProblem(record.line, str(exc), column_of.get("country"), address)
    try:
        ContactChanges.model_validate(standard)
    except ValidationError as exc:
        names = [str(e["loc"][0]) if e["loc"] else "" for e in exc.errors()]
        reason = "; ".join(
            f"{column_of.get(n, n)}: {e['msg']}" for n, e in zip(names, exc.errors(), strict=True)
        )
        return RowProblem(record.line, reason, column_of.get(names[0], names[0]), address)
    return Candidate(record.line, address, standard, custom, tags)
