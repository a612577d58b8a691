"""Import every capability's tables so ``metadata`` holds the whole schema."""

from ekiden.auth import tables as auth_tables
from ekiden.contacts import tables as contact_tables
from ekiden.forms import tables as form_tables
from ekiden.segments import tables as segment_tables
from ekiden.tracking import tables as tracking_tables

__all__ = [
    "auth_tables",
    "contact_tables",
    "form_tables",
    "segment_tables",
    "tracking_tables",
]
