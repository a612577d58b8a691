"""Journeys, their immutable versions, enrolments (the durable state the engine runs) and
each enrolment's history, plus what actions leave behind (on-site messages, coupons)."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ekiden.db.schema import Id, Json, UTCDateTime, metadata

journeys = Table(
    "journeys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(100), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("status", String(10), nullable=False),  # draft | active | paused | archived
    Column("version", Integer, nullable=False),  # the version new enrolments get
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("activated_at", UTCDateTime),  # first activation: triggers look at later facts
    Column("archived_at", UTCDateTime),
)

journey_versions = Table(
    "journey_versions",
    metadata,
    Column("journey_id", Id, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Json, nullable=False),  # never changed once written
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("journey_id", "version"),
)

enrolments = Table(
    "enrolments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("journey_id", Id, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("node", String(63), nullable=False),  # the current node (the last one when ended)
    # running (due to run `node`) | waiting (inside a wait node) | completed | exited |
    # converted (goal reached) | failed
    Column("state", String(10), nullable=False),
    Column("due_at", UTCDateTime),  # NULL once ended
    Column("wait_started_at", UTCDateTime),
    Column("wait_deadline", UTCDateTime),
    Column("steps", Integer, nullable=False, server_default="0"),  # nodes run so far
    Column("attempts", Integer, nullable=False, server_default="0"),  # failed tries of `node`
    Column("trigger", String(200), nullable=False),  # event:<id> | segment:<id> | manual | ...
    # The re-entry policy as a unique constraint: "once" for never; "live" while running for
    # after_exit (cleared when it ends); the trigger for always (one enrolment per fact).
    Column("entry_slot", String(200)),
    Column("entered_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("last_error", Text),
    UniqueConstraint("journey_id", "contact_id", "entry_slot"),
    Index("ix_enrolments_due_at", "due_at"),
    Index("ix_enrolments_contact_id", "contact_id"),
    Index("ix_enrolments_journey_id_node", "journey_id", "node"),
)

enrolment_steps = Table(
    "enrolment_steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("enrolment_id", Id, ForeignKey("enrolments.id", ondelete="CASCADE"), nullable=False),
    Column("journey_id", Id, nullable=False),
    Column("contact_id", Id, nullable=False),
    Column("node", String(63), nullable=False),
    Column("node_type", String(20), nullable=False),
    # the port taken (next, on_timeout, branches[0], otherwise, paths[1], end) or waiting |
    # exited | converted | failed
    Column("result", String(40), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("detail", Json, nullable=False, default=dict),
    Index("ix_enrolment_steps_enrolment_id", "enrolment_id"),
    Index("ix_enrolment_steps_journey_id_node", "journey_id", "node"),
    Index("ix_enrolment_steps_contact_id_journey_id_at", "contact_id", "journey_id", "at"),
)

# On-site messages waiting for the contact's next visit (shown once by the browser snippet).
onsite_messages = Table(
    "onsite_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),  # enrolment, node and visit
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("journey_id", Id, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
    Column("title", Text),
    Column("message", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("shown_at", UTCDateTime),  # first shown
    Column("link", Text),  # a call to action (http / https)
    Column("link_text", Text),
    Column("show", String(20), nullable=False, server_default="once"),  # | until_dismissed
    Column("shown_count", Integer, nullable=False, server_default="0"),
    Column("dismissed_at", UTCDateTime),  # closed by the visitor
    Column("clicked_at", UTCDateTime),  # its link followed
    Index("ix_onsite_messages_contact_id", "contact_id"),
)

# One-time coupon codes: one per contact and journey, unique across all.
coupons = Table(
    "coupons",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("journey_id", Id, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
    Column("field", String(100), nullable=False),  # the name templates show it under
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Column("redeemed_at", UTCDateTime),
    UniqueConstraint("journey_id", "contact_id"),
    Index("ix_coupons_contact_id", "contact_id"),
)
