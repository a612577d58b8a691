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


# Subscription topics (ニュースレター, セミナー案内, …): a marketing template may belong to one; a
# contact may opt out of a topic (or into one that is off by default) on the preference page.
email_topics = Table(
    "email_topics",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(100), nullable=False, unique=True),
    Column("name_ja", Text, nullable=False),
    Column("name_en", Text, nullable=False),
    Column("description_ja", Text, nullable=False, server_default=""),
    Column("description_en", Text, nullable=False, server_default=""),
    Column("default_subscribed", Boolean, nullable=False),
    Column("position", Integer, nullable=False, server_default="0"),  # order on the page
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("archived_at", UTCDateTime),
)

# The topic of a template (at most one; none: the template goes to every subscriber).
email_template_topics = Table(
    "email_template_topics",
    metadata,
    Column(
        "template_id",
        Id,
        ForeignKey("email_templates.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("topic_id", Id, ForeignKey("email_topics.id"), nullable=False, index=True),
)

# A contact's own choice for a topic, with the evidence of the latest decision (when, how,
# from where); without a row the topic's default applies. Every change is also an
# ``email_topic_changed`` event in the contact's history.
email_topic_choices = Table(
    "email_topic_choices",
    metadata,
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("topic_id", Id, ForeignKey("email_topics.id", ondelete="CASCADE"), nullable=False),
    Column("subscribed", Boolean, nullable=False),
    Column("source", String(32), nullable=False),  # preferences | api | cli
    Column("source_ref", Text),
    Column("text_shown", Text),
    Column("ip", String(45)),
    Column("user_agent", Text),
    Column("changed_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("contact_id", "topic_id"),
    Index("ix_email_topic_choices_topic_id_subscribed", "topic_id", "subscribed"),
)

# Topic choices follow contact merges (a registered merge step); imported last, as it needs the
# tables above.
from ekiden.messaging import topics as _topics  # noqa: E402, F401
