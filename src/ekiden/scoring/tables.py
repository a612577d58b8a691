"""Score definitions, their rules, the awarded-points ledger, current values and history.

``score_awards`` is the ledger other capabilities may read (calibration): one row per
(rule, contact, event) that earned points — ``event_id`` is NULL for profile rules — with
``awarded_at`` (the event's time, or when the contact first matched a profile rule) and
``points`` as awarded after the rule's cap. Decay and expiry are applied when values are
computed, never written back into the ledger.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
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

score_definitions = Table(
    "score_definitions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(100), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    # the score never goes above / below these (a cap per score); NULL: no bound
    Column("max_points", Float),
    Column("min_points", Float),
    # bumped on every rule change; built_version < version means a full recompute is due
    Column("version", Integer, nullable=False, server_default="1"),
    Column("built_version", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("recomputed_at", UTCDateTime),
    # the time-driven sweep (decay, expiry, relative dates): when it last finished and where
    # the one in progress is (last contact id done)
    Column("swept_at", UTCDateTime),
    Column("sweep_cursor", Id),
)

score_rules = Table(
    "score_rules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("score_id", Id, ForeignKey("score_definitions.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(100), nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("kind", String(16), nullable=False),  # profile | event
    # profile: a filter on the contact; event: {"event": type, "where": [...]}
    Column("condition", Json, nullable=False),
    Column("points", Float, nullable=False),
    Column("min_dwell_seconds", Float),
    Column("cap_points", Float),
    Column("cap_days", Float),
    Column("half_life_days", Float),
    Column("expires_after_days", Float),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("position", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("score_id", "key"),
)

score_awards = Table(
    "score_awards",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule_id", Id, ForeignKey("score_rules.id", ondelete="CASCADE"), nullable=False),
    Column("score_id", Id, ForeignKey("score_definitions.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", Id),
    Column("awarded_at", UTCDateTime, nullable=False),
    Column("points", Float, nullable=False),
    Index("ix_score_awards_contact_id_score_id", "contact_id", "score_id"),
    Index("ix_score_awards_rule_id_contact_id_event_id", "rule_id", "contact_id", "event_id"),
)

contact_scores = Table(
    "contact_scores",
    metadata,
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("score_key", String(100), nullable=False),
    Column("value", Float, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("contact_id", "score_key"),
    Index("ix_contact_scores_score_key_value", "score_key", "value"),
)

score_history = Table(
    "score_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("score_key", String(100), nullable=False),
    Column("value", Float, nullable=False),
    Column("previous", Float, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Index("ix_score_history_contact_id_changed_at", "contact_id", "changed_at"),
)
