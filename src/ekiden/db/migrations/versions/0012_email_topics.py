"""email subscription topics, the topic of a template and contacts' topic choices

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ekiden.db.schema

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = ekiden.db.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "email_topics",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name_ja", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=False),
        sa.Column("description_ja", sa.Text(), server_default="", nullable=False),
        sa.Column("description_en", sa.Text(), server_default="", nullable=False),
        sa.Column("default_subscribed", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.Column("archived_at", When(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_topics")),
        sa.UniqueConstraint("key", name=op.f("uq_email_topics_key")),
    )
    op.create_table(
        "email_template_topics",
        sa.Column("template_id", Id, nullable=False),
        sa.Column("topic_id", Id, nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["email_templates.id"],
            name=op.f("fk_email_template_topics_template_id_email_templates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["email_topics.id"],
            name=op.f("fk_email_template_topics_topic_id_email_topics"),
        ),
        sa.PrimaryKeyConstraint("template_id", name=op.f("pk_email_template_topics")),
    )
    op.create_index(
        op.f("ix_email_template_topics_topic_id"), "email_template_topics", ["topic_id"]
    )
    op.create_table(
        "email_topic_choices",
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("topic_id", Id, nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("source_ref", sa.Text(), nullable=True),
        sa.Column("text_shown", sa.Text(), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("changed_at", When(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_email_topic_choices_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["email_topics.id"],
            name=op.f("fk_email_topic_choices_topic_id_email_topics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", "topic_id", name=op.f("pk_email_topic_choices")),
    )
    op.create_index(
        "ix_email_topic_choices_topic_id_subscribed",
        "email_topic_choices",
        ["topic_id", "subscribed"],
    )


def downgrade() -> None:
    op.drop_index("ix_email_topic_choices_topic_id_subscribed", table_name="email_topic_choices")
    op.drop_table("email_topic_choices")
    op.drop_index(op.f("ix_email_template_topics_topic_id"), table_name="email_template_topics")
    op.drop_table("email_template_topics")
    op.drop_table("email_topics")
