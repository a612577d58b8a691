from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from ekiden.db.schema import Id, Json, UTCDateTime, metadata

forms = Table(
    "forms",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("slug", String(100), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    # download | webinar | inquiry | survey | other
    Column("kind", String(16), nullable=False),
    # the validated FormDefinition (fields, consent, success behaviour) as JSON
    Column("definition", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("archived_at", UTCDateTime),
    Index("ix_forms_kind", "kind"),
)
