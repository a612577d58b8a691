"""segments, static lists, membership and the dirty-contact queue

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import ekiden.db.schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
When = ekiden.db.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("filter", Json, nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("time_dependent", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("member_count", Id, server_default="0", nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("updated_at", When(), nullable=False),
        sa.Column("refreshed_at", When(), nullable=True),
        sa.Column("built_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("archived_at", When(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("slug", name=op.f("uq_segments_slug")),
    )
    op.create_table(
        "lists",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", When(), nullable=False),
        sa.Column("archived_at", When(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lists")),
        sa.UniqueConstraint("slug", name=op.f("uq_lists_slug")),
    )
    op.create_table(
        "segment_members",
        sa.Column("segment_id", Id, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("entered_at", When(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_segment_members_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segments.id"],
            name=op.f("fk_segment_members_segment_id_segments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("segment_id", "contact_id", name=op.f("pk_segment_members")),
    )
    op.create_index("ix_segment_members_contact_id", "segment_members", ["contact_id"])
    op.create_table(
        "list_members",
        sa.Column("list_id", Id, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("added_at", When(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_list_members_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["lists.id"],
            name=op.f("fk_list_members_list_id_lists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("list_id", "contact_id", name=op.f("pk_list_members")),
    )
    op.create_index("ix_list_members_contact_id", "list_members", ["contact_id"])
    op.create_table(
        "dirty_contacts",
        sa.Column("contact_id", Id, autoincrement=False, nullable=False),
        sa.Column("marked_at", When(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_dirty_contacts")),
    )


def downgrade() -> None:
    op.drop_table("dirty_contacts")
    op.drop_index("ix_list_members_contact_id", table_name="list_members")
    op.drop_table("list_members")
    op.drop_index("ix_segment_members_contact_id", table_name="segment_members")
    op.drop_table("segment_members")
    op.drop_table("lists")
    op.drop_table("segments")
