"""Features of contacts, read from the database for training and scoring.

Behaviour counts only human activity (``machine`` is false) and leaves out derived facts
(source ``system``, e.g. a stage change), which would tell the model the outcome itself:

- ``events.<type>``: events of each type (the most frequent types of the population);
- ``section.<prefix>``: page views per site section, the first path segment (``/pricing``);
- ``dwell_seconds``: total active time on pages; ``days_since_last_activity``;
- ``email_open_rate`` / ``email_click_rate``: messages opened / clicked over messages
  delivered, counted by ``send_id`` (missing when nothing was delivered).

Profile, categorical: industry and country (the account's when the contact has none),
job-title seniority, how the contact became known (``source_kind``) and the first UTM
source seen; numeric: the account's employee count. Tags and scores are not features: an
outcome is often a tag, and scores are themselves derived.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Connection, func, select

from ekiden.contacts.tables import accounts, contacts
from ekiden.predictive.model import Table, Value
from ekiden.tracking.tables import events

MAX_EVENT_TYPES = 30
MAX_SECTIONS = 30
EMAIL_TYPES = ("email_delivered", "email_opened", "email_clicked")
BEHAVIOUR = (
    "dwell_seconds",
    "days_since_last_activity",
    "email_open_rate",
    "email_click_rate",
)
PROFILE = ("industry", "country", "seniority", "source_kind", "utm_source", "employees")

# (words in the title, level): first match wins, so 本部長 is found before 部長
SENIORITY: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("社長", "代表", "取締役", "役員", "本部長", "事業部長", "ceo", "cto", "cfo", "coo",
         "cmo", "chief", "president", "founder", "owner", "vp", "vice president"),
        "executive",
    ),
    (("部長", "director", "head of", "室長", "所長", "支店長"), "director"),
    (("課長", "マネージャー", "manager", "lead", "リーダー"), "manager"),
    (("係長", "主任", "担当", "staff", "specialist", "engineer", "analyst", "member"), "staff"),
)  # fmt: skip


def seniority(title: str | None) -> str | None:
    """executive | director | manager | staff | other; None when there is no title."""
    if not title or not title.strip():
        return None
    text = title.strip().lower()
    for words, level in SENIORITY:
        if any(word in text for word in words):
            return level
    return "other"


def section(path: str | None) -> str:
    """The first segment of a URL path: "/pricing/enterprise" -> "/pricing"; "" -> "/"."""
    if not path:
        return "/"
    head = path.split("?", 1)[0].strip("/").split("/", 1)[0]
    return f"/{head.lower()}"


def contact_features(
    conn: Connection, now: datetime, contact_ids: Sequence[int], columns: list[str] | None = None
) -> Table:
    """One row per id in ``contact_ids`` (same order). With ``columns`` (a trained model's),
    exactly those; without, every profile column and the behaviour columns of this population
    (the most frequent event types and site sections among these contacts' human events).
    Counts absent from a contact's history are 0."""
    if not contact_ids:
        return Table(list(columns) if columns is not None else list(PROFILE), [])
    grouped = _behaviour_rows(conn, now, set(contact_ids))
    if columns is None:
        columns = _choose_columns(grouped) + list(PROFILE)
    position = {name: i for i, name in enumerate(columns)}
    counted = ("events.", "section.")
    blank: list[Value] = [
        0 if name.startswith(counted) or name == "dwell_seconds" else None for name in columns
    ]
    rows: dict[int, list[Value]] = {cid: blank.copy() for cid in contact_ids}
    _fill_behaviour(grouped, now, rows, position)
    _fill_email(conn, now, set(contact_ids), rows, position)
    _fill_profile(conn, now, set(contact_ids), rows, position)
    return Table(list(columns), [rows[cid] for cid in contact_ids])


def _human(now: datetime) -> list[ColumnElement[bool]]:
    return [
        events.c.contact_id.is_not(None),
        events.c.machine.is_(False),
        events.c.source != "system",
        events.c.occurred_at <= now,
    ]


# (contact id, event type, site section or None, count, dwell ms, last activity in days)
Grouped = list[tuple[int, str, str | None, int, float, float | None]]


def _behaviour_rows(conn: Connection, now: datetime, wanted: set[int]) -> Grouped:
    # the day number of the last event as a plain float: converting one datetime per group
    # costs more than the query itself on large populations
    if conn.dialect.name == "postgresql":
        last = func.extract("epoch", func.max(events.c.occurred_at)) / 86400
    else:
        last = func.julianday(func.max(events.c.occurred_at)) - _UNIX_EPOCH_JULIAN
    query = (
        select(
            events.c.contact_id,
            events.c.type,
            events.c.path,
            func.count(),
            func.coalesce(func.sum(events.c.dwell_ms), 0),
            last,
        )
        .where(*_human(now))
        .group_by(events.c.contact_id, events.c.type, events.c.path)
    )
    sections: dict[str | None, str] = {}
    grouped: Grouped = []
    for cid, type_, path, count, dwell_ms, last_day in conn.execute(query).all():
        if cid not in wanted:
            continue
        name = None
        if type_ == "page":
            name = sections.get(path)
            if name is None:
                name = sections[path] = section(path)
        grouped.append(
            (
                cid,
                type_,
                name,
                int(count),
                float(dwell_ms),
                None if last_day is None else float(last_day),
            )
        )
    return grouped


_UNIX_EPOCH_JULIAN = 2440587.5


def _choose_columns(grouped: Grouped) -> list[str]:
    types: Counter[str] = Counter()
    sections: Counter[str] = Counter()
    for _, type_, name, count, _, _ in grouped:
        types[type_] += count
        if name is not None:
            sections[name] += count
    top_types = sorted(types.items(), key=lambda item: (-item[1], item[0]))[:MAX_EVENT_TYPES]
    top_sections = sorted(sections.items(), key=lambda item: (-item[1], item[0]))[:MAX_SECTIONS]
    return (
        [f"events.{t}" for t, _ in top_types]
        + [f"section.{s}" for s, _ in top_sections]
        + list(BEHAVIOUR)
    )


def _fill_behaviour(
    grouped: Grouped, now: datetime, rows: dict[int, list[Value]], position: dict[str, int]
) -> None:
    type_at = {k[len("events.") :]: i for k, i in position.items() if k.startswith("events.")}
    section_at = {k[len("section.") :]: i for k, i in position.items() if k.startswith("section.")}
    dwell_at = position.get("dwell_seconds")
    recency_at = position.get("days_since_last_activity")
    latest: dict[int, float] = {}
    for cid, type_, name, count, dwell_ms, last_day in grouped:
        row = rows[cid]
        if (i := type_at.get(type_)) is not None:
            row[i] = int(row[i] or 0) + count
        if name is not None and (i := section_at.get(name)) is not None:
            row[i] = int(row[i] or 0) + count
        if dwell_at is not None and dwell_ms:
            row[dwell_at] = float(row[dwell_at] or 0) + dwell_ms / 1000
        if last_day is not None and last_day > latest.get(cid, -1.0):
            latest[cid] = last_day
    if recency_at is not None:
        today = now.timestamp() / 86400
        for cid, last_day in latest.items():
            rows[cid][recency_at] = round(max(0.0, today - last_day), 4)


def _fill_email(
    conn: Connection,
    now: datetime,
    wanted: set[int],
    rows: dict[int, list[Value]],
    position: dict[str, int],
) -> None:
    opened_at = position.get("email_open_rate")
    clicked_at = position.get("email_click_rate")
    if opened_at is None and clicked_at is None:
        return
    # one message counts once however often it was opened; without a send_id, each event
    message = events.c.properties["send_id"].as_string()
    query = (
        select(events.c.contact_id, events.c.type, message, func.count())
        .where(*_human(now), events.c.type.in_(EMAIL_TYPES))
        .group_by(events.c.contact_id, events.c.type, message)
    )
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(EMAIL_TYPES, 0))
    for cid, type_, send_id, count in conn.execute(query).all():
        if cid in wanted:
            counts[cid][type_] += 1 if send_id is not None else count
    for cid, seen in counts.items():
        delivered = seen.get("email_delivered", 0)
        if not delivered:
            continue
        if opened_at is not None:
            rows[cid][opened_at] = min(1.0, seen.get("email_opened", 0) / delivered)
        if clicked_at is not None:
            rows[cid][clicked_at] = min(1.0, seen.get("email_clicked", 0) / delivered)


def _fill_profile(
    conn: Connection,
    now: datetime,
    wanted: set[int],
    rows: dict[int, list[Value]],
    position: dict[str, int],
) -> None:
    if not any(name in position for name in PROFILE):
        return
    query = select(
        contacts.c.id,
        func.coalesce(contacts.c.industry, accounts.c.industry),
        func.coalesce(contacts.c.country, accounts.c.country),
        contacts.c.job_title,
        contacts.c.source_kind,
        accounts.c.employees,
    ).select_from(contacts.outerjoin(accounts, accounts.c.id == contacts.c.account_id))
    for cid, industry, country, title, source_kind, employees in conn.execute(query):
        if cid not in wanted:
            continue
        values: dict[str, Value] = {
            "industry": _clean(industry),
            "country": _clean(country),
            "seniority": seniority(title),
            "source_kind": source_kind,
            "employees": float(employees) if employees is not None else None,
        }
        row = rows[cid]
        for name, value in values.items():
            if (i := position.get(name)) is not None:
                row[i] = value
    if (utm_at := position.get("utm_source")) is not None:
        utm = events.c.properties["utm_source"].as_string()
        first = conn.execute(
            select(events.c.contact_id, utm)
            .where(*_human(now), events.c.type == "page", utm.is_not(None))
            .order_by(events.c.occurred_at.desc())
        )
        for cid, source in first:  # newest first: the last write is the first touch
            if cid in wanted and isinstance(source, str):
                rows[cid][utm_at] = _clean(source)


def _clean(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return value.strip().lower()


__all__ = ["contact_features", "section", "seniority"]
