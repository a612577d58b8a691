from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from ekiden.db.schema import Id, Json, UTCDateTime, metadata

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("domain", String(255), unique=True),
    # the caller's own id for this company (Segment groupId)
    Column("external_id", String(255), unique=True),
    Column("industry", Text),
    Column("employees", Id),
    Column("country", String(2)),
    Column("owner_id", Id, ForeignKey("users.id", ondelete="SET NULL")),
    Column("custom", Json, nullable=False, default=dict),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # normalised (trimmed, domain lower-cased); NULL for a contact known only by user id
    Column("email", String(320), unique=True),
    # the caller's own id for this person (Segment userId)
    Column("external_id", String(255), unique=True),
    Column("last_name", Text),
    Column("first_name", Text),
    Column("last_name_kana", Text),
    Column("first_name_kana", Text),
    Column("company", Text),
    Column("account_id", Id, ForeignKey("accounts.id", ondelete="SET NULL")),
    Column("department", Text),
    Column("job_title", Text),
    Column("industry", Text),
    Column("phone", String(40)),
    Column("country", String(2)),
    Column("time_zone", String(64)),
    Column("owner_id", Id, ForeignKey("users.id", ondelete="SET NULL")),
    Column("custom", Json, nullable=False, default=dict),
    # current consent to marketing email: none | granted | withdrawn (history in `consents`)
    Column("email_consent", String(10), nullable=False, server_default="none"),
    Column("unsubscribed_at", UTCDateTime),
    Column("suppressed_at", UTCDateTime),
    Column("suppression_reason", Text),
    # how the contact first became known: form | import | api | ingest
    Column("source_kind", String(10)),
    Column("source_ref", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime),
    # set on the losing side of a merge; such a row is a tombstone pointing at the winner
    Column("merged_into_id", Id, ForeignKey("contacts.id", ondelete="SET NULL")),
    # current lifecycle and buying stage keys (ekiden.lifecycle; history in stage_history)
    Column("lifecycle_stage", String(32)),
    Column("lifecycle_stage_at", UTCDateTime),
    Column("buying_stage", String(32)),
    Column("buying_stage_at", UTCDateTime),
    Index("ix_contacts_account_id", "account_id"),
    Index("ix_contacts_owner_id", "owner_id"),
    Index("ix_contacts_updated_at", "updated_at"),
    Index("ix_contacts_merged_into_id", "merged_into_id"),
    Index("ix_contacts_lifecycle_stage", "lifecycle_stage"),
)

contact_tags = Table(
    "contact_tags",
    metadata,
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("tag", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("contact_id", "tag"),
    Index("ix_contact_tags_tag", "tag"),
)

# Every identifier that points at a contact: browser anonymous ids (one per device),
# the caller's user ids, and e-mail addresses absorbed by a merge.
identities = Table(
    "identities",
    metadata,
    Column("kind", String(16), nullable=False),  # anonymous_id | user_id | email
    Column("value", String(320), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("device", String(16)),  # desktop | mobile | tablet | bot | other, for anonymous ids
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("kind", "value"),
    Index("ix_identities_contact_id", "contact_id"),
)

custom_fields = Table(
    "custom_fields",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("label", Text, nullable=False),
    Column("label_en", Text),
    # text | number | integer | boolean | date | datetime | choice | multi_choice | email | url
    Column("type", String(16), nullable=False),
    Column("choices", Json),
    Column("required", Boolean, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False, server_default="email"),
    Column("status", String(10), nullable=False),  # granted | withdrawn
    Column("source", String(16), nullable=False),  # form | import | api | unsubscribe
    Column("source_ref", Text),  # form slug, import id, api key prefix
    Column("text_shown", Text),
    Column("ip", String(45)),
    Column("user_agent", Text),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index("ix_consents_contact_id", "contact_id", "recorded_at"),
)

contact_merges = Table(
    "contact_merges",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("winner_id", Id, ForeignKey("contacts.id"), nullable=False),
    Column("loser_id", Id, ForeignKey("contacts.id"), nullable=False),
    # the loser's row as it was before the merge, so nothing it held is lost
    Column("loser_snapshot", Json, nullable=False),
    Column("merged_by", Text, nullable=False),  # "api:<key prefix>", "cli", "identify"
    Column("merged_at", UTCDateTime, nullable=False),
    Index("ix_contact_merges_winner_id", "winner_id"),
)

imports = Table(
    "imports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("filename", Text, nullable=False),
    Column("encoding", String(16), nullable=False),
    Column("mode", String(16), nullable=False),  # all_or_nothing | valid_rows
    Column("mapping", Json, nullable=False),
    Column("rows_total", Id, nullable=False),
    Column("rows_created", Id, nullable=False),
    Column("rows_updated", Id, nullable=False),
    Column("rows_invalid", Id, nullable=False),
    Column("errors", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
