"""Which contact fields a filter may name, and what type each has.

The catalogue is built per call from the custom field definitions, so a filter is checked
against the fields that exist now; both evaluators bind a filter through it first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Connection, select

from ekiden.contacts.customfields import list_fields
from ekiden.scoring.tables import score_definitions
from ekiden.segments.tables import lists, segments

FieldType = Literal["text", "number", "datetime", "date", "boolean"]

STANDARD: dict[str, FieldType] = {
    "email": "text",
    "external_id": "text",
    "last_name": "text",
    "first_name": "text",
    "last_name_kana": "text",
    "first_name_kana": "text",
    "company": "text",
    "department": "text",
    "job_title": "text",
    "industry": "text",
    "phone": "text",
    "country": "text",
    "time_zone": "text",
    "email_consent": "text",
    "source_kind": "text",
    "source_ref": "text",
    "suppression_reason": "text",
    "owner_id": "number",
    "account_id": "number",
    "created_at": "datetime",
    "updated_at": "datetime",
    "last_seen_at": "datetime",
    "unsubscribed_at": "datetime",
    "suppressed_at": "datetime",
    # stage keys, e.g. {"field": "lifecycle_stage", "op": "eq", "value": "hot"}
    "lifecycle_stage": "text",
    "lifecycle_stage_at": "datetime",
    "buying_stage": "text",
    "buying_stage_at": "datetime",
    # derived flags, for readable filters: {"field": "unsubscribed", "op": "eq", "value": false}
    "unsubscribed": "boolean",
    "suppressed": "boolean",
}

ACCOUNT: dict[str, FieldType] = {
    "name": "text",
    "domain": "text",
    "industry": "text",
    "country": "text",
    "employees": "number",
}

_CUSTOM_TYPES: dict[str, FieldType] = {
    "text": "text",
    "email": "text",
    "url": "text",
    "choice": "text",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
}


@dataclass(frozen=True)
class FieldRef:
    """A resolved field: where it lives and its type."""

    kind: Literal["standard", "account", "custom", "score"]
    name: str
    type: FieldType


@dataclass(frozen=True)
class Catalog:
    custom: dict[str, FieldType]
    segments: dict[str, int] = field(default_factory=dict)  # slug -> id (live segments)
    lists: dict[str, int] = field(default_factory=dict)  # slug -> id (live lists)
    # keys of the defined scores: score.<key> is a number, 0 for a contact without points
    scores: frozenset[str] = frozenset()

    def resolve(self, field: str) -> FieldRef | None:
        """The field named ``field``, or None when no such field exists."""
        if field in STANDARD:
            return FieldRef("standard", field, STANDARD[field])
        prefix, _, rest = field.partition(".")
        if prefix == "account" and rest in ACCOUNT:
            return FieldRef("account", rest, ACCOUNT[rest])
        if prefix == "custom" and rest in self.custom:
            return FieldRef("custom", rest, self.custom[rest])
        if prefix == "score" and rest in self.scores:
            return FieldRef("score", rest, "number")
        return None


def load_catalog(conn: Connection) -> Catalog:
    """Fields known now. multi_choice custom fields are not filterable yet (left out)."""
    live_segments = conn.execute(
        select(segments.c.slug, segments.c.id).where(segments.c.archived_at.is_(None))
    )
    live_lists = conn.execute(select(lists.c.slug, lists.c.id).where(lists.c.archived_at.is_(None)))
    score_keys = frozenset(conn.execute(select(score_definitions.c.key)).scalars())
    return Catalog(
        custom={f.key: _CUSTOM_TYPES[f.type] for f in list_fields(conn) if f.type in _CUSTOM_TYPES},
        segments={r.slug: r.id for r in live_segments},
        lists={r.slug: r.id for r in live_lists},
        scores=score_keys,
    )
