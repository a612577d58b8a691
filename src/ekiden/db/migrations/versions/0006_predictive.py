"""predictive models and predictions

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ekiden.db.schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
When = ekiden.db.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "predictive_models",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("trained_at", When(), nullable=False),
        sa.Column("outcome", Json, nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column("negatives", sa.Integer(), nullable=False),
        sa.Column("metrics", Json, nullable=False),
        sa.Column("features", Json, nullable=False),
        sa.Column("model", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictive_models")),
        sa.UniqueConstraint("version", name=op.f("uq_predictive_models_version")),
    )
    op.create_table(
        "predictions",
        sa.Column("contact_id", Id, autoincrement=False, nullable=False),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("factors", Json, nullable=False),
        sa.Column("scored_at", When(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_predictions_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["predictive_models.id"],
            name=op.f("fk_predictions_model_id_predictive_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_predictions")),
    )
    op.create_index("ix_predictions_probability", "predictions", ["probability"])
    op.create_index("ix_predictions_model_id", "predictions", ["model_id"])


def downgrade() -> None:
    op.drop_index("ix_predictions_model_id", table_name="predictions")
    op.drop_index("ix_predictions_probability", table_name="predictions")
    op.drop_table("predictions")
    op.drop_table("predictive_models")
