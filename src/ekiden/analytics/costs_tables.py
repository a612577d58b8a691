from __future__ import annotations

from sqlalchemy import Column, Date, Numeric, String, Table, Text, UniqueConstraint

from ekiden.db.schema import Id, UTCDateTime, metadata

# What a campaign cost, entered by the user: ``amount`` spent over the days ``first_day`` to
# ``last_day`` (both included). ``campaign`` is the utm_campaign value the campaign's links
# carry; reports spread a cost evenly over its days.
campaign_costs = Table(
    "campaign_costs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("campaign", String(200), nullable=False),
    Column("first_day", Date, nullable=False),
    Column("last_day", Date, nullable=False),
    Column("amount", Numeric(18, 2, asdecimal=False), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("note", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("campaign", "first_day", "last_day"),
)
