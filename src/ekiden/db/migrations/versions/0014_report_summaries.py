"""report indexes: a covering index of events for the web reports

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_reports",
        "events",
        ["type", "occurred_at", "machine", "contact_id", "path"],
    )


def downgrade() -> None:
    op.drop_index("ix_events_reports", table_name="events")
