"""Import every capability's tables so ``metadata`` holds the whole schema."""

from ekiden.analytics import costs_tables as campaign_cost_tables
from ekiden.analytics import summaries as report_indexes
from ekiden.auth import tables as auth_tables
from ekiden.contacts import tables as contact_tables
from ekiden.forms import tables as form_tables
from ekiden.journeys import tables as journey_tables
from ekiden.lifecycle import tables as lifecycle_tables
from ekiden.messaging import sends_tables as sending_tables
from ekiden.messaging import tables as messaging_tables
from ekiden.outbox import tables as outbox_tables
from ekiden.predictive import tables as predictive_tables
from ekiden.scoring import tables as scoring_tables
from ekiden.segments import tables as segment_tables
from ekiden.tracking import tables as tracking_tables

__all__ = [
    "auth_tables",
    "campaign_cost_tables",
    "contact_tables",
    "form_tables",
    "journey_tables",
    "lifecycle_tables",
    "messaging_tables",
    "outbox_tables",
    "predictive_tables",
    "report_indexes",
    "scoring_tables",
    "segment_tables",
    "sending_tables",
    "tracking_tables",
]
