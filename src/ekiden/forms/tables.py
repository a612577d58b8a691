from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

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
    # honeypot hits: spam answered like a success but never stored
    Column("spam_count", Integer, nullable=False, server_default="0"),
    Index("ix_forms_kind", "kind"),
)
