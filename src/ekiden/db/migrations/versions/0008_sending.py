"""email sends messages and ab tests

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ekiden.db.schema

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
When = ekiden.db.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "email_sends",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("template_key", sa.String(length=100), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("audience", Json, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("scheduled_at", When(), nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("cursor", Id, server_default="0", nullable=False),
        sa.Column("recipients", Id, server_default="0", nullable=False),
        sa.Column("dispatched_at", When(), nullable=True),
        sa.Column("cancelled_at", When(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("ab", Json, nullable=True),
        sa.Column("ab_winner", sa.String(length=32), nullable=True),
        sa.Column("ab_decided_at", When(), nullable=True),
        sa.Column("ab_result", Json, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_sends")),
    )
    op.create_index("ix_email_sends_status_scheduled_at", "email_sends", ["status", "scheduled_at"])
    op.create_table(
        "email_messages",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("send_id", Id, nullable=True),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("template_key", sa.String(length=100), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("variant", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("message_id_header", sa.String(length=255), nullable=True),
        sa.Column("queued_at", When(), nullable=False),
        sa.Column("sent_at", When(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_email_messages_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["email_sends.id"],
            name=op.f("fk_email_messages_send_id_email_sends"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_messages")),
        sa.UniqueConstraint("key", name=op.f("uq_email_messages_key")),
        sa.UniqueConstraint(
            "send_id", "contact_id", name=op.f("uq_email_messages_send_id_contact_id")
        ),
    )
    op.create_index(
        "ix_email_messages_contact_id_sent_at", "email_messages", ["contact_id", "sent_at"]
    )
    op.create_index("ix_email_messages_template_key", "email_messages", ["template_key"])


def downgrade() -> None:
    op.drop_index("ix_email_messages_template_key", table_name="email_messages")
    op.drop_index("ix_email_messages_contact_id_sent_at", table_name="email_messages")
    op.drop_table("email_messages")
    op.drop_index("ix_email_sends_status_scheduled_at", table_name="email_sends")
    op.drop_table("email_sends")
