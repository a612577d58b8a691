"""Active time on a page: the snippet's ``page_dwell`` track events.

The snippet sends ``track("page_dwell", {dwell_ms, page_message_id, path, url})`` each time the
visitor leaves or hides a page; ``dwell_ms`` is the active (visible) time since its previous
report, so a page view's dwell time is the sum of its increments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DWELL_EVENT = "page_dwell"
# One report covers at most an hour: a tab left visible on an unattended screen is not reading.
MAX_DWELL_MS = 3600 * 1000


def dwell_details(properties: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """(path, dwell_ms) for the events table's columns. ``dwell_ms`` is None unless it is a
    non-negative number; it is capped at MAX_DWELL_MS. The properties stay as sent."""
    path = properties.get("path")
    raw = properties.get("dwell_ms")
    dwell: int | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 0:
        dwell = min(int(raw), MAX_DWELL_MS)
    return (path if isinstance(path, str) and path else None), dwell
