"""lifecycle and buying stages sales handoff

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ekiden.db.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
When = ekiden.db.schema.UTCDateTime


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def upgrade() -> None:
    op.add_column("contacts", sa.Column("lifecycle_stage", sa.String(length=32), nullable=True))
    op.add_column("contacts", sa.Column("lifecycle_stage_at", When(), nullable=True))
    op.add_column("contacts", sa.Column("buying_stage", sa.String(length=32), nullable=True))
    op.add_column("contacts", sa.Column("buying_stage_at", When(), nullable=True))
    op.create_index("ix_contacts_lifecycle_stage", "contacts", ["lifecycle_stage"])
    op.create_table(
        "stages",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("department", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=True),
        sa.Column("allow_skip", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("allow_back", sa.Boolean(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stages")),
        sa.UniqueConstraint("kind", "key", name=op.f("uq_stages_kind_key")),
    )
    op.create_table(
        "stage_rules",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("filter", Json, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_rules")),
    )
    op.create_table(
        "stage_history",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("from_stage", sa.String(length=32), nullable=True),
        sa.Column("to_stage", sa.String(length=32), nullable=False),
        sa.Column("moved_at", When(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("rule_id", Id, nullable=True),
        sa.Column("moved_by", sa.Text(), nullable=True),
        sa.Column("user_id", Id, nullable=True),
        sa.Column("deal_value", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        _fk("stage_history", "contact_id", "contacts", "CASCADE"),
        _fk("stage_history", "user_id", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_history")),
    )
    op.create_index("ix_stage_history_contact_id", "stage_history", ["contact_id", "moved_at"])
    op.create_table(
        "hot_lead_definitions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("filter", Json, nullable=False),
        sa.Column("emails", Json, nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("assign_owner", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("task_due_days", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hot_lead_definitions")),
        sa.UniqueConstraint("key", name=op.f("uq_hot_lead_definitions_key")),
    )
    op.create_table(
        "hot_lead_states",
        sa.Column("definition_id", Id, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("matching", sa.Boolean(), nullable=False),
        sa.Column("crossings", sa.Integer(), nullable=False),
        sa.Column("changed_at", When(), nullable=False),
        sa.Column("checked_at", When(), nullable=False),
        _fk("hot_lead_states", "contact_id", "contacts", "CASCADE"),
        sa.ForeignKeyConstraint(
            ["definition_id"],
            ["hot_lead_definitions.id"],
            name=op.f("fk_hot_lead_states_definition_id_hot_lead_definitions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("definition_id", "contact_id", name=op.f("pk_hot_lead_states")),
    )
    op.create_index("ix_hot_lead_states_contact_id", "hot_lead_states", ["contact_id"])
    op.create_index("ix_hot_lead_states_matching", "hot_lead_states", ["matching", "checked_at"])
    op.create_table(
        "handoffs",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("definition_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("crossing", sa.Integer(), nullable=False),
        sa.Column("raised_at", When(), nullable=False),
        sa.Column("owner_id", Id, nullable=True),
        sa.Column("feedback", sa.String(length=10), nullable=True),
        sa.Column("feedback_reason", sa.Text(), nullable=True),
        sa.Column("feedback_by", sa.Text(), nullable=True),
        sa.Column("feedback_at", When(), nullable=True),
        _fk("handoffs", "contact_id", "contacts", "CASCADE"),
        _fk("handoffs", "owner_id", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoffs")),
        sa.UniqueConstraint(
            "definition_key",
            "contact_id",
            "crossing",
            name=op.f("uq_handoffs_definition_key_contact_id_crossing"),
        ),
    )
    op.create_index("ix_handoffs_contact_id", "handoffs", ["contact_id"])
    op.create_index("ix_handoffs_raised_at", "handoffs", ["raised_at"])
    op.create_table(
        "territories",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("filter", Json, nullable=False),
        sa.Column("user_id", Id, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", When(), nullable=False),
        _fk("territories", "user_id", "users", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_territories")),
    )
    op.create_table(
        "round_robin",
        sa.Column("pool", sa.String(length=32), nullable=False),
        sa.Column("last_user_id", Id, nullable=False),
        sa.PrimaryKeyConstraint("pool", name=op.f("pk_round_robin")),
    )
    op.create_table(
        "sales_tasks",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("handoff_id", Id, nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("owner_id", Id, nullable=True),
        sa.Column("due_at", When(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.Column("closed_at", When(), nullable=True),
        _fk("sales_tasks", "contact_id", "contacts", "CASCADE"),
        _fk("sales_tasks", "handoff_id", "handoffs", "SET NULL"),
        _fk("sales_tasks", "owner_id", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales_tasks")),
    )
    op.create_index("ix_sales_tasks_status", "sales_tasks", ["status", "due_at"])
    op.create_index("ix_sales_tasks_contact_id", "sales_tasks", ["contact_id"])
    op.create_index("ix_sales_tasks_owner_id", "sales_tasks", ["owner_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_sales_tasks_owner_id", "sales_tasks"),
        ("ix_sales_tasks_contact_id", "sales_tasks"),
        ("ix_sales_tasks_status", "sales_tasks"),
    ):
        op.drop_index(index, table_name=table)
    op.drop_table("sales_tasks")
    op.drop_table("round_robin")
    op.drop_table("territories")
    op.drop_index("ix_handoffs_raised_at", table_name="handoffs")
    op.drop_index("ix_handoffs_contact_id", table_name="handoffs")
    op.drop_table("handoffs")
    op.drop_index("ix_hot_lead_states_matching", table_name="hot_lead_states")
    op.drop_index("ix_hot_lead_states_contact_id", table_name="hot_lead_states")
    op.drop_table("hot_lead_states")
    op.drop_table("hot_lead_definitions")
    op.drop_index("ix_stage_history_contact_id", table_name="stage_history")
    op.drop_table("stage_history")
    op.drop_table("stage_rules")
    op.drop_table("stages")
    op.drop_index("ix_contacts_lifecycle_stage", table_name="contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("buying_stage_at")
        batch.drop_column("buying_stage")
        batch.drop_column("lifecycle_stage_at")
        batch.drop_column("lifecycle_stage")
