from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text

from ekiden.db.schema import Id, Json, UTCDateTime, metadata

# The append-only behaviour history (R1). Rows are never deleted or edited in content;
# the only update is attributing an event to a contact (identity resolution, merge).
events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # page | screen | identify | group | alias | form_submitted | page_dwell | <track event name>
    Column("type", String(200), nullable=False),
    Column("name", Text),  # page / screen name
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE")),
    Column("anonymous_id", String(200)),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # URL path for page and dwell events: the most filtered property, kept as a column
    Column("path", Text),
    # active time on the page for page_dwell events (an increment; sum per page view)
    Column("dwell_ms", Integer),
    Column("properties", Json, nullable=False, default=dict),
    Column("context", Json, nullable=False, default=dict),
    Column("ip", String(45)),
    Column("user_agent", Text),
    # machine activity (security scanners, bots, prefetchers): kept, but excluded by default
    Column("machine", Boolean, nullable=False, server_default="0"),
    Column("machine_reason", Text),
    # idempotency: Segment messageId / snippet event id; a repeat is ignored
    Column("message_id", String(200), unique=True),
    Column("source", String(16), nullable=False),  # api | browser | pixel | form | system
    Index("ix_events_contact_id_occurred_at", "contact_id", "occurred_at"),
    Index("ix_events_type_occurred_at", "type", "occurred_at"),
    Index("ix_events_occurred_at", "occurred_at"),
    Index("ix_events_anonymous_id", "anonymous_id"),
)
