"""Indexes the reports read through (migration 0014).

``ix_events_reports`` covers what the web reports read of page and dwell events (type, time,
machine flag, contact, path), so that counting a year of page views reads the index alone
instead of visiting every event row (each row carries its JSON properties and context).
"""

from __future__ import annotations

from sqlalchemy import Index

from ekiden.tracking.tables import events

EVENTS_REPORTS_INDEX = Index(
    "ix_events_reports",
    events.c.type,
    events.c.occurred_at,
    events.c.machine,
    events.c.contact_id,
    events.c.path,
)
