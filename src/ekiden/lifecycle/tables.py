from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ekiden.db.schema import Id, Json, UTCDateTime, metadata

# Configured stages; when a kind has no rows the built-in defaults apply (stages.py).
stages = Table(
    "stages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(10), nullable=False),  # lifecycle | buying
    Column("key", String(32), nullable=False),
    Column("name", Text, nullable=False),
    Column("name_en", Text),
    Column("position", Integer, nullable=False),
    Column("department", String(32)),  # marketing | inside_sales | sales | customer_success
    Column("outcome", String(10)),  # won | lost (closed stages); NULL for open stages
    Column("allow_skip", Boolean, nullable=False, server_default="1"),
    Column("allow_back", Boolean, nullable=False, server_default="0"),
    UniqueConstraint("kind", "key"),
)

# Automatic forward moves: a filter-language condition and the stage it leads to.
stage_rules = Table(
    "stage_rules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(10), nullable=False),
    Column("name", Text, nullable=False),
    Column("target", String(32), nullable=False),
    Column("filter", Json, nullable=False),
    Column("position", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Every stage a contact entered, by what or whom (no foreign key to rules or users'
# names: the history outlives the configuration).
stage_history = Table(
    "stage_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("from_stage", String(32)),
    Column("to_stage", String(32), nullable=False),
    Column("moved_at", UTCDateTime, nullable=False),
    Column("source", String(10), nullable=False),  # entry | rule | api | feedback | merge
    Column("rule_id", Id),
    Column("moved_by", Text),  # "api:<key prefix>"
    Column("user_id", Id, ForeignKey("users.id", ondelete="SET NULL")),
    Column("deal_value", Numeric(18, 2, asdecimal=False)),
    Column("currency", String(3)),
    Column("note", Text),
    Index("ix_stage_history_contact_id", "contact_id", "moved_at"),
)

# Hot-lead and upsell definitions: a filter whose crossing alerts sales.
hot_lead_definitions = Table(
    "hot_lead_definitions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(64), nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("kind", String(10), nullable=False),  # hot_lead | upsell
    Column("filter", Json, nullable=False),
    Column("emails", Json, nullable=False),  # extra recipients besides the owner
    Column("webhook_url", Text),
    Column("assign_owner", Boolean, nullable=False, server_default="1"),
    Column("task_due_days", Integer),  # NULL: no call-list task
    Column("enabled", Boolean, nullable=False, server_default="1"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Whether a contact matched a definition when last looked at: an alert is raised on the
# change from not matching to matching, and re-armed only when the contact stops matching.
hot_lead_states = Table(
    "hot_lead_states",
    metadata,
    Column(
        "definition_id",
        Id,
        ForeignKey("hot_lead_definitions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("matching", Boolean, nullable=False),
    Column("crossings", Integer, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    # when a matching contact was last looked at (re-arming: rearm.py)
    Column("checked_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("definition_id", "contact_id"),
    Index("ix_hot_lead_states_contact_id", "contact_id"),
    Index("ix_hot_lead_states_matching", "matching", "checked_at"),
)

# One row per alert raised (a hand-off), with sales' feedback on it (R12).
handoffs = Table(
    "handoffs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("definition_key", String(64), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("crossing", Integer, nullable=False),
    Column("raised_at", UTCDateTime, nullable=False),
    Column("owner_id", Id, ForeignKey("users.id", ondelete="SET NULL")),
    Column("feedback", String(10)),  # accepted | rejected
    Column("feedback_reason", Text),
    Column("feedback_by", Text),
    Column("feedback_at", UTCDateTime),
    UniqueConstraint("definition_key", "contact_id", "crossing"),
    Index("ix_handoffs_contact_id", "contact_id"),
    Index("ix_handoffs_raised_at", "raised_at"),
)

# Territory rules: contacts matching the filter go to the user (first match by position).
territories = Table(
    "territories",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("filter", Json, nullable=False),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Where the round robin over sales users stands.
round_robin = Table(
    "round_robin",
    metadata,
    Column("pool", String(32), primary_key=True),
    Column("last_user_id", Id, nullable=False),
)

# The sales call list.
sales_tasks = Table(
    "sales_tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("handoff_id", Id, ForeignKey("handoffs.id", ondelete="SET NULL")),
    Column("kind", String(16), nullable=False),  # call | upsell | follow_up
    Column("title", Text, nullable=False),
    Column("owner_id", Id, ForeignKey("users.id", ondelete="SET NULL")),
    Column("due_at", UTCDateTime),
    Column("status", String(10), nullable=False),  # open | done | cancelled
    Column("outcome", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Index("ix_sales_tasks_status", "status", "due_at"),
    Index("ix_sales_tasks_contact_id", "contact_id"),
    Index("ix_sales_tasks_owner_id", "owner_id"),
)
