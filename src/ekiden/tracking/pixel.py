"""The no-JS tracking pixel: one ``GET /t/p.gif`` becomes one page (or named) event.

The pixel is public and answers the same GIF whatever happens, so this module decides quietly:
``record_pixel_hit`` returns whether it stored something and never raises for bad input.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection

from ekiden.auth.keys import find_key
from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.errors import EkidenError
from ekiden.tracking.ingest import ingest_messages

# Same shape as the snippet's anonymous ids (UUIDs, or the site's own ids of that form).
ANONYMOUS_ID = re.compile(r"[A-Za-z0-9_.-]{8,64}")
EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
# Names the system itself gives events: a public GET must not be able to fake them.
# Names the system records itself: a pixel may not forge them.
RESERVED_EVENTS = frozenset(
    {
        "identify", "alias", "group", "screen", "page_dwell", "form_submitted", "track",
        "task_outcome", "stage_changed", "segment_entered", "segment_exited",
        "onsite_shown", "onsite_dismissed", "onsite_clicked", "handoff_raised",
        "handoff_feedback", "contact_imported", "score_adjusted",
    }
)  # fmt: skip
MAX_KEY = 100
MAX_URL = 2048  # longer URLs and referrers are cut to this many characters


@dataclass(frozen=True)
class PixelHit:
    """The query parameters of one pixel request, as received (not yet trusted)."""

    key: str
    anonymous_id: str
    url: str
    referrer: str
    event: str
    ip: str | None
    user_agent: str | None


def hit_problem(hit: PixelHit) -> str | None:
    """Why this hit must not be stored (said only in logs/tests, never to the caller)."""
    if not hit.key or len(hit.key) > MAX_KEY:
        return "missing or oversized key"
    if not ANONYMOUS_ID.fullmatch(hit.anonymous_id):
        return "anonymous id is not 8-64 letters, digits, '-', '_' or '.'"
    if hit.event and (not EVENT_NAME.fullmatch(hit.event) or hit.event in RESERVED_EVENTS):
        return "event name is malformed or reserved"
    if hit.event.startswith("email_"):
        return "email events come from the email tracking endpoints only"
    return None


def new_anonymous_id() -> str:
    return str(uuid.uuid4())


def record_pixel_hit(conn: Connection, clock: Clock, settings: Settings, hit: PixelHit) -> bool:
    """Store the hit as a ``page`` event (or a track event named ``hit.event``) with source
    ``pixel`` when the key is a live ingest key and every parameter is acceptable.

    Returns True when an event was stored. An unknown or admin key stores nothing: the key
    is public in the page's HTML, so only ingest keys (write-only) are honoured.
    """
    if hit_problem(hit) is not None:
        return False
    key = find_key(conn, hit.key)
    if key is None or key.scope != "ingest":
        return False
    context: dict[str, object] = {"library": {"name": "ekiden-pixel", "version": "1"}}
    if hit.user_agent:
        context["userAgent"] = hit.user_agent[:1000]
    message: dict[str, object] = {
        "messageId": f"px-{uuid.uuid4()}",
        "anonymousId": hit.anonymous_id,
        "context": context,
    }
    properties = {"url": hit.url[:MAX_URL], "referrer": hit.referrer[:MAX_URL]}
    properties = {name: value for name, value in properties.items() if value}
    if hit.event and hit.event != "page":
        message.update(type="track", event=hit.event, properties=properties)
    else:
        message.update(type="page", properties=properties)
    try:
        with conn.begin_nested():
            result = ingest_messages(
                conn, clock, settings, [message], request_ip=hit.ip, source="pixel"
            )
    except EkidenError:
        return False
    return result.stored > 0
