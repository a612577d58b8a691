"""on-site messages: a call to action, show once or until dismissed, shown / dismissed /
clicked

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import ekiden.db.schema

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

When = ekiden.db.schema.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("onsite_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("link_text", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("show", sa.String(length=20), server_default="once", nullable=False)
        )
        batch_op.add_column(
            sa.Column("shown_count", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("dismissed_at", When(), nullable=True))
        batch_op.add_column(sa.Column("clicked_at", When(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("onsite_messages", schema=None) as batch_op:
        for name in ("clicked_at", "dismissed_at", "shown_count", "show", "link_text", "link"):
            batch_op.drop_column(name)
