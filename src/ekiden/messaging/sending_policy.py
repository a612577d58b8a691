"""When marketing email may go out: quiet hours and per-contact frequency caps.

Both apply to marketing email only; transactional mail (a requested document, a password)
is never held or capped. Consent and suppression are ``may_send``'s business and apply to
every category.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, func, select

from ekiden.messaging.sends_tables import email_messages

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")


def parse_quiet_hours(value: str) -> tuple[time, time] | None:
    """``"21:00-08:00"`` → (21:00, 08:00); empty → None. ValueError on anything else."""
    if not value.strip():
        return None
    match = _WINDOW.match(value)
    if match is None:
        raise ValueError("must look like 21:00-08:00 (start-end, 24-hour clock) or be empty")
    sh, sm, eh, em = (int(g) for g in match.groups())
    if sh > 23 or eh > 23 or sm > 59 or em > 59:
        raise ValueError("hours must be 0-23 and minutes 0-59, e.g. 21:00-08:00")
    start, end = time(sh, sm), time(eh, em)
    if start == end:
        raise ValueError("start and end of quiet hours must differ")
    return start, end


def contact_zone(name: str | None, default: ZoneInfo) -> ZoneInfo:
    """The contact's own time zone when it is a valid IANA name, else ``default``."""
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def quiet_until(now: datetime, zone: ZoneInfo, window: tuple[time, time] | None) -> datetime | None:
    """The end of the quiet period ``now`` falls in (UTC), or None when mail may go now.

    The window is local wall-clock time in ``zone`` and may span midnight (21:00-08:00).
    """
    if window is None:
        return None
    start, end = window
    local = now.astimezone(zone)
    clock_time = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= clock_time < end
        end_day = local.date()
    else:
        inside = clock_time >= start or clock_time < end
        end_day = local.date() + timedelta(days=1) if clock_time >= start else local.date()
    if not inside:
        return None
    resume = datetime.combine(end_day, end, tzinfo=zone)
    return resume.astimezone(now.tzinfo)


def marketing_sent_since(conn: Connection, contact_id: int, since: datetime) -> int:
    """How many marketing emails went to the contact from ``since`` on."""
    count = conn.execute(
        select(func.count())
        .select_from(email_messages)
        .where(
            email_messages.c.contact_id == contact_id,
            email_messages.c.category == "marketing",
            email_messages.c.sent_at >= since,
        )
    ).scalar_one()
    return int(count)


def marketing_sent_counts(
    conn: Connection, contact_ids: list[int], since: datetime
) -> dict[int, int]:
    """``marketing_sent_since`` for many contacts in one query per 500; contacts with none
    are absent."""
    wanted = sorted(set(contact_ids))
    counts: dict[int, int] = {}
    for start in range(0, len(wanted), 500):
        rows = conn.execute(
            select(email_messages.c.contact_id, func.count())
            .where(
                email_messages.c.contact_id.in_(wanted[start : start + 500]),
                email_messages.c.category == "marketing",
                email_messages.c.sent_at >= since,
            )
            .group_by(email_messages.c.contact_id)
        )
        counts.update({int(contact_id): int(count) for contact_id, count in rows})
    return counts


def over_frequency_cap(
    conn: Connection, contact_id: int, now: datetime, *, cap: int, days: int
) -> bool:
    """True when the contact already got ``cap`` marketing emails in the last ``days``."""
    if cap <= 0:
        return False
    return marketing_sent_since(conn, contact_id, now - timedelta(days=days)) >= cap
