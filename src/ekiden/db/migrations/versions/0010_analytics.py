"""analytics: campaign costs entered by the user

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ekiden.db.schema

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = ekiden.db.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "campaign_costs",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("campaign", sa.String(length=200), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=18, scale=2, asdecimal=False), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_costs")),
        sa.UniqueConstraint(
            "campaign",
            "first_day",
            "last_day",
            name=op.f("uq_campaign_costs_campaign_first_day_last_day"),
        ),
    )


def downgrade() -> None:
    op.drop_table("campaign_costs")
