"""journeys: versions, enrolments and their history

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ekiden.db.schema

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
When = ekiden.db.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.Column("activated_at", When(), nullable=True),
        sa.Column("archived_at", When(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journeys")),
        sa.UniqueConstraint("key", name=op.f("uq_journeys_key")),
    )
    op.create_table(
        "journey_versions",
        sa.Column("journey_id", Id, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", Json, nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.ForeignKeyConstraint(
            ["journey_id"],
            ["journeys.id"],
            name=op.f("fk_journey_versions_journey_id_journeys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("journey_id", "version", name=op.f("pk_journey_versions")),
    )
    op.create_table(
        "enrolments",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("journey_id", Id, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("due_at", When(), nullable=True),
        sa.Column("wait_started_at", When(), nullable=True),
        sa.Column("wait_deadline", When(), nullable=True),
        sa.Column("steps", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("trigger", sa.String(length=200), nullable=False),
        sa.Column("entry_slot", sa.String(length=200), nullable=True),
        sa.Column("entered_at", When(), nullable=False),
        sa.Column("ended_at", When(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_enrolments_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["journey_id"],
            ["journeys.id"],
            name=op.f("fk_enrolments_journey_id_journeys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolments")),
        sa.UniqueConstraint(
            "journey_id",
            "contact_id",
            "entry_slot",
            name=op.f("uq_enrolments_journey_id_contact_id_entry_slot"),
        ),
    )
    op.create_index("ix_enrolments_due_at", "enrolments", ["due_at"])
    op.create_index("ix_enrolments_contact_id", "enrolments", ["contact_id"])
    op.create_index("ix_enrolments_journey_id_node", "enrolments", ["journey_id", "node"])
    op.create_table(
        "enrolment_steps",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("enrolment_id", Id, nullable=False),
        sa.Column("journey_id", Id, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("node", sa.String(length=63), nullable=False),
        sa.Column("node_type", sa.String(length=20), nullable=False),
        sa.Column("result", sa.String(length=40), nullable=False),
        sa.Column("at", When(), nullable=False),
        sa.Column("detail", Json, nullable=False),
        sa.ForeignKeyConstraint(
            ["enrolment_id"],
            ["enrolments.id"],
            name=op.f("fk_enrolment_steps_enrolment_id_enrolments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_steps")),
    )
    op.create_index("ix_enrolment_steps_enrolment_id", "enrolment_steps", ["enrolment_id"])
    op.create_index("ix_enrolment_steps_journey_id_node", "enrolment_steps", ["journey_id", "node"])
    op.create_index(
        "ix_enrolment_steps_contact_id_journey_id_at",
        "enrolment_steps",
        ["contact_id", "journey_id", "at"],
    )
    op.create_table(
        "onsite_messages",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("journey_id", Id, nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("expires_at", When(), nullable=True),
        sa.Column("shown_at", When(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_onsite_messages_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["journey_id"],
            ["journeys.id"],
            name=op.f("fk_onsite_messages_journey_id_journeys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_onsite_messages")),
        sa.UniqueConstraint("key", name=op.f("uq_onsite_messages_key")),
    )
    op.create_index("ix_onsite_messages_contact_id", "onsite_messages", ["contact_id"])
    op.create_table(
        "coupons",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("journey_id", Id, nullable=False),
        sa.Column("field", sa.String(length=100), nullable=False),
        sa.Column("issued_at", When(), nullable=False),
        sa.Column("expires_at", When(), nullable=True),
        sa.Column("redeemed_at", When(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_coupons_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["journey_id"],
            ["journeys.id"],
            name=op.f("fk_coupons_journey_id_journeys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("code", name=op.f("uq_coupons_code")),
        sa.UniqueConstraint(
            "journey_id", "contact_id", name=op.f("uq_coupons_journey_id_contact_id")
        ),
    )
    op.create_index("ix_coupons_contact_id", "coupons", ["contact_id"])


def downgrade() -> None:
    op.drop_index("ix_coupons_contact_id", table_name="coupons")
    op.drop_table("coupons")
    op.drop_index("ix_onsite_messages_contact_id", table_name="onsite_messages")
    op.drop_table("onsite_messages")
    op.drop_index("ix_enrolment_steps_contact_id_journey_id_at", table_name="enrolment_steps")
    op.drop_index("ix_enrolment_steps_journey_id_node", table_name="enrolment_steps")
    op.drop_index("ix_enrolment_steps_enrolment_id", table_name="enrolment_steps")
    op.drop_table("enrolment_steps")
    op.drop_index("ix_enrolments_journey_id_node", table_name="enrolments")
    op.drop_index("ix_enrolments_contact_id", table_name="enrolments")
    op.drop_index("ix_enrolments_due_at", table_name="enrolments")
    op.drop_table("enrolments")
    op.drop_table("journey_versions")
    op.drop_table("journeys")
