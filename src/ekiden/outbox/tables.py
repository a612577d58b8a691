"""The outbox: one row per side effect that leaves the database (an email, a webhook)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from ekiden.db.schema import Id, Json, UTCDateTime, metadata

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # email | mail | webhook | ...
    # the caller's idempotency key: enqueueing the same key twice writes one row
    Column("key", String(255), nullable=False, unique=True),
    Column("payload", Json, nullable=False),
    Column("contact_id", Id),
    # pending → sending → sent | failed; cancelled by the caller before delivery
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("due_at", UTCDateTime, nullable=False),
    # when the row may be picked up next: due_at at first, later the retry time
    Column("next_attempt_at", UTCDateTime, nullable=False),
    # lease of the worker that is delivering the row; expires at claimed_until
    Column("claimed_at", UTCDateTime),
    Column("claimed_until", UTCDateTime),
    Column("claimed_by", String(64)),
    Column("last_error", Text),
    Column("sent_at", UTCDateTime),
    # the Message-ID header of a sent email: bounces that quote it find the row
    Column("message_id", String(255)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_outbox_contact_id", "contact_id"),
    Index("ix_outbox_message_id", "message_id"),
)
