"""Sends of an email template to an audience, and one row per message to one contact."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ekiden.db.schema import Id, Json, UTCDateTime, metadata

email_sends = Table(
    "email_sends",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, server_default=""),
    Column("template_key", String(100), nullable=False),
    # the template version pinned when the send was created
    Column("template_version", Integer, nullable=False),
    Column("category", String(16), nullable=False),  # marketing | transactional
    # {"contact": id} | {"list": slug} | {"segment": slug} | {"filter": <filter>}
    Column("audience", Json, nullable=False),
    # scheduled → sending → (testing →) sent; scheduled | sending | testing → cancelled;
    # scheduled | sending → failed (the audience's segment or list is gone)
    Column("status", String(16), nullable=False),
    Column("scheduled_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # audience written out in batches: the last contact id written (resumable after a crash)
    Column("cursor", Id, nullable=False, server_default="0"),
    Column("recipients", Id, nullable=False, server_default="0"),
    Column("dispatched_at", UTCDateTime),
    Column("cancelled_at", UTCDateTime),
    Column("error", Text),  # why the audience could not be written (status "failed")
    # A/B test: {"variants": [...], "test_share": 0.2, "metric": "clicks", "window_hours": 4}
    Column("ab", Json),
    Column("ab_winner", String(32)),
    Column("ab_decided_at", UTCDateTime),
    Column("ab_result", Json),
    Index("ix_email_sends_status_scheduled_at", "status", "scheduled_at"),
)

email_messages = Table(
    "email_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # NULL for single messages (journeys, hand-offs) written by ``send_email``
    Column("send_id", Id, ForeignKey("email_sends.id", ondelete="CASCADE")),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    # idempotency key: "send:<send>:<contact>" for sends, the caller's key otherwise
    Column("key", String(255), nullable=False, unique=True),
    Column("template_key", String(100), nullable=False),
    Column("template_version", Integer, nullable=False),
    Column("category", String(16), nullable=False),  # marketing | transactional
    Column("variant", String(32)),  # A/B test variant name
    # held (A/B remainder awaiting the winner) | queued | sent | skipped | failed | bounced
    Column("status", String(16), nullable=False),
    Column("reason", Text),  # why skipped / failed
    Column("message_id_header", String(255)),
    Column("queued_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint("send_id", "contact_id"),
    Index("ix_email_messages_contact_id_sent_at", "contact_id", "sent_at"),
    Index("ix_email_messages_template_key", "template_key"),
)
