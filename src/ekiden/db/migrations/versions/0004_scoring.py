"""rule scores history and decay

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ekiden.db.schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
When = ekiden.db.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "score_definitions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("max_points", sa.Float(), nullable=True),
        sa.Column("min_points", sa.Float(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("built_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.Column("recomputed_at", When(), nullable=True),
        sa.Column("swept_at", When(), nullable=True),
        sa.Column("sweep_cursor", Id, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_definitions")),
        sa.UniqueConstraint("key", name=op.f("uq_score_definitions_key")),
    )
    op.create_table(
        "score_rules",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("score_id", Id, nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("condition", Json, nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("min_dwell_seconds", sa.Float(), nullable=True),
        sa.Column("cap_points", sa.Float(), nullable=True),
        sa.Column("cap_days", sa.Float(), nullable=True),
        sa.Column("half_life_days", sa.Float(), nullable=True),
        sa.Column("expires_after_days", sa.Float(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.ForeignKeyConstraint(
            ["score_id"],
            ["score_definitions.id"],
            name=op.f("fk_score_rules_score_id_score_definitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_rules")),
        sa.UniqueConstraint("score_id", "key", name=op.f("uq_score_rules_score_id_key")),
    )
    op.create_table(
        "score_awards",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("rule_id", Id, nullable=False),
        sa.Column("score_id", Id, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("event_id", Id, nullable=True),
        sa.Column("awarded_at", When(), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_score_awards_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["score_rules.id"],
            name=op.f("fk_score_awards_rule_id_score_rules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["score_id"],
            ["score_definitions.id"],
            name=op.f("fk_score_awards_score_id_score_definitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_awards")),
    )
    op.create_index(
        "ix_score_awards_contact_id_score_id", "score_awards", ["contact_id", "score_id"]
    )
    op.create_index(
        "ix_score_awards_rule_id_contact_id_event_id",
        "score_awards",
        ["rule_id", "contact_id", "event_id"],
    )
    op.create_table(
        "contact_scores",
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("score_key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_scores_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", "score_key", name=op.f("pk_contact_scores")),
    )
    op.create_index("ix_contact_scores_score_key_value", "contact_scores", ["score_key", "value"])
    op.create_table(
        "score_history",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("score_key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("previous", sa.Float(), nullable=False),
        sa.Column("changed_at", When(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_score_history_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_history")),
    )
    op.create_index(
        "ix_score_history_contact_id_changed_at", "score_history", ["contact_id", "changed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_score_history_contact_id_changed_at", table_name="score_history")
    op.drop_table("score_history")
    op.drop_index("ix_contact_scores_score_key_value", table_name="contact_scores")
    op.drop_table("contact_scores")
    op.drop_index("ix_score_awards_rule_id_contact_id_event_id", table_name="score_awards")
    op.drop_index("ix_score_awards_contact_id_score_id", table_name="score_awards")
    op.drop_table("score_awards")
    op.drop_table("score_rules")
    op.drop_table("score_definitions")
