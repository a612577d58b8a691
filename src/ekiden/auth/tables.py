from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, String, Table, Text

from ekiden.db.schema import Id, UTCDateTime, metadata

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", Text, nullable=False, server_default=""),
    # admin | marketer | sales | analyst
    Column("role", String(20), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("locale", String(8), nullable=False, server_default="ja"),
    Column("time_zone", String(64), nullable=False, server_default="Asia/Tokyo"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, server_default=""),
    # ingest: may only write events; admin: the whole REST API
    Column("scope", String(10), nullable=False),
    # the first characters of the key, shown in listings so a key can be recognised
    Column("prefix", String(16), nullable=False),
    # sha256 of the whole key; keys are random 256-bit strings, so no slow hash is needed
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_by", Id, ForeignKey("users.id", ondelete="SET NULL")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    Index("ix_api_keys_scope", "scope"),
)
