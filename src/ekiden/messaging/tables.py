from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from ekiden.db.schema import Id, UTCDateTime, metadata

# The current state of each email template; every saved change is also a row of
# email_template_versions so that a send can pin exactly what it rendered.
email_templates = Table(
    "email_templates",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(100), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("category", String(16), nullable=False),  # marketing | transactional
    Column("version", Integer, nullable=False),  # the current version number
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("archived_at", UTCDateTime),
)

email_template_versions = Table(
    "email_template_versions",
    metadata,
    Column("template_id", Id, ForeignKey("email_templates.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("category", String(16), nullable=False),
    Column("subject", Text, nullable=False),
    Column("preheader", Text, nullable=False, server_default=""),
    Column("html", Text, nullable=False),
    Column("text", Text),  # NULL: generated from the HTML
    Column("sender_name", Text),  # NULL: the settings' default
    Column("sender_address", String(320)),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("template_id", "version"),
)
