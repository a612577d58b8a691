from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from ekiden.db.schema import Id, Json, UTCDateTime, metadata

segments = Table(
    "segments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("slug", String(100), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("filter", Json, nullable=False),
    # bumped on every definition change; a change triggers a full rebuild
    Column("version", Integer, nullable=False, server_default="1"),
    # membership can change with the passage of time alone (relative date windows)
    Column("time_dependent", Boolean, nullable=False, server_default="0"),
    Column("member_count", Id, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("refreshed_at", UTCDateTime),
    # the version whose membership is stored; < version means a rebuild is due
    Column("built_version", Integer, nullable=False, server_default="0"),
    Column("archived_at", UTCDateTime),
)

segment_members = Table(
    "segment_members",
    metadata,
    Column("segment_id", Id, ForeignKey("segments.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("entered_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("segment_id", "contact_id"),
    Index("ix_segment_members_contact_id", "contact_id"),
)

lists = Table(
    "lists",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("slug", String(100), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("archived_at", UTCDateTime),
)

list_members = Table(
    "list_members",
    metadata,
    Column("list_id", Id, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("source", String(16), nullable=False),  # api | csv | form | journey
    PrimaryKeyConstraint("list_id", "contact_id"),
    Index("ix_list_members_contact_id", "contact_id"),
)

# Contacts whose data or behaviour changed since segments last looked at them. Written in the
# same transaction as the change; the worker claims and clears rows. Per-row state rather than
# a cursor over event ids, which would skip rows committed out of order on PostgreSQL.
dirty_contacts = Table(
    "dirty_contacts",
    metadata,
    Column("contact_id", Id, primary_key=True, autoincrement=False),
    Column("marked_at", UTCDateTime, nullable=False),
)
