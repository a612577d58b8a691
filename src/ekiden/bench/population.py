"""A generated, realistic population for benchmarks, written with set-based SQL.

Contacts: a job-title mix of a Japanese B2B database (部長 5 %, 本部長 1 %, 課長 10 %, …),
3 % unsubscribed. Events: page views over site sections (pricing ≈ 10 % of views), email
deliveries and opens, form submissions, spread over 180 days before ``now``, 5 % flagged as
machine activity. Generated inside the database (a recursive CTE on SQLite,
generate_series on PostgreSQL) so that ten million rows take seconds, not minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, text

SPAN_SECONDS = 180 * 86400

_PATHS = [
    "/pricing", "/pricing/enterprise", "/case-studies/acme", "/case-studies/ekiden-shoji",
    "/products/ma", "/products/ma/features", "/products/crm", "/", "/", "/blog/scoring",
    "/blog/nurturing", "/blog/seminar-report", "/docs/whitepaper", "/webinars/2026-12",
    "/about", "/careers", "/contact", "/products/ma/integrations", "/news", "/",
]  # fmt: skip
_TITLES = (
    "CASE WHEN {m} < 5 THEN '部長' WHEN {m} = 5 THEN '本部長' WHEN {m} < 16 THEN '課長' "
    "WHEN {m} < 40 THEN '担当' WHEN {m} < 70 THEN 'マネージャー' ELSE NULL END"
)


# Row i's kind comes from its last digit and its page from the next two, deterministically; the
# contact and the time are drawn at random (each random() appears once per row, so no query
# rewriting can evaluate it twice), which keeps kind, page, contact and time independent.
_KIND = "(i % 10)"
_PAGE = "((i / 10) % 20)"


def _path_case(expr: str) -> str:
    whens = " ".join(f"WHEN {i} THEN '{p}'" for i, p in enumerate(_PATHS))
    return f"CASE {expr} {whens} END"


def generate(engine: Engine, *, contacts: int, events: int, now: datetime) -> None:
    """Fill an empty, migrated database with ``contacts`` contacts and ``events`` events."""
    now_text = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if engine.dialect.name == "postgresql":
        _generate_postgres(engine, contacts, events, now_text)
    else:
        _generate_sqlite(engine, contacts, events, now_text)


def _generate_sqlite(engine: Engine, contacts: int, events: int, now: str) -> None:
    stamp = "strftime('%Y-%m-%d %H:%M:%S', :now) || '.000000'"
    with engine.begin() as conn:
        conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
                "INSERT INTO contacts (id, email, job_title, company, custom, email_consent, "
                "unsubscribed_at, created_at, updated_at) "
                f"SELECT i, 'c' || i || '@example.com', {_TITLES.format(m='i % 100')}, "
                f"'会社' || (i % 5000), '{{}}', 'granted', "
                f"CASE WHEN i % 33 = 0 THEN {stamp} END, {stamp}, {stamp} FROM n"
            ),
            {"count": contacts, "now": now},
        )
    step = 1_000_000
    for start in range(0, events, step):
        size = min(step, events - start)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n "
                    "WHERE i < :stop) "
                    "INSERT INTO events (type, contact_id, occurred_at, received_at, path, "
                    "properties, context, machine, source) "
                    "SELECT t, 1 + abs(random() % :contacts), at, at, "
                    "CASE WHEN t = 'page' THEN "
                    + _path_case(_PAGE)
                    + " END, '{}', '{}', (i % 20 = 0), 'api' FROM ("
                    "SELECT i, CASE WHEN " + _KIND + " < 7 THEN 'page' WHEN " + _KIND + " = 7 THEN "
                    "'email_delivered' WHEN "
                    + _KIND
                    + " = 8 THEN 'email_opened' ELSE 'form_submitted' "
                    "END AS t, strftime('%Y-%m-%d %H:%M:%S', :now, '-' || "
                    "abs(random() % :span) || ' seconds') || '.000000' AS at FROM n)"
                ),
                {
                    "start": start,
                    "stop": start + size - 1,
                    "contacts": contacts,
                    "now": now,
                    "span": SPAN_SECONDS,
                },
            )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def _generate_postgres(engine: Engine, contacts: int, events: int, now: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO contacts (id, email, job_title, company, custom, email_consent, "
                "unsubscribed_at, created_at, updated_at) "
                f"SELECT i, 'c' || i || '@example.com', {_TITLES.format(m='i % 100')}, "
                "'会社' || (i % 5000), '{}'::jsonb, 'granted', "
                "CASE WHEN i % 33 = 0 THEN CAST(:now AS timestamp) END, "
                "CAST(:now AS timestamp), CAST(:now AS timestamp) "
                "FROM generate_series(1, :count) AS i"
            ),
            {"count": contacts, "now": now},
        )
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence('contacts', 'id'), :count)"),
            {"count": contacts},
        )
    step = 2_000_000
    for start in range(0, events, step):
        size = min(step, events - start)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO events (type, contact_id, occurred_at, received_at, path, "
                    "properties, context, machine, source) "
                    "SELECT t, 1 + floor(random() * :contacts)::bigint, at, at, "
                    "CASE WHEN t = 'page' THEN "
                    + _path_case(_PAGE)
                    + " END, '{}'::jsonb, '{}'::jsonb, (i % 20 = 0), 'api' FROM ("
                    "SELECT i, CASE WHEN " + _KIND + " < 7 THEN 'page' WHEN " + _KIND + " = 7 THEN "
                    "'email_delivered' WHEN "
                    + _KIND
                    + " = 8 THEN 'email_opened' ELSE 'form_submitted' "
                    "END AS t, "
                    "CAST(:now AS timestamp) - make_interval(secs => floor(random() * :span)) "
                    "AS at "
                    "FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS i) g"
                ),
                {
                    "start": start,
                    "stop": start + size - 1,
                    "contacts": contacts,
                    "now": now,
                    "span": SPAN_SECONDS,
                },
            )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


# What the report benchmarks add on top of ``generate`` (other benchmarks do not call it).
# Per contact, by id % 100: 0-49 move on to nurturing 2 days after creation, 20-24 skip it
# (acquired -> hot), 0-24 reach hot after 10 days, 7 is sent back to nurturing after 12 and
# forward again after 14, 0-9 reach meeting after 20 and 0-3 are won after 40; 40-44 are lost
# after 15. Only moves before ``now`` are written.
_MOVES = [
    # (stage, from stage, days after creation, condition on m = id % 100)
    ("nurturing", "acquired", 2, "m < 50 AND NOT (m BETWEEN 20 AND 24)"),
    ("hot", "nurturing", 10, "m < 25 AND NOT (m BETWEEN 20 AND 24)"),
    ("hot", "acquired", 10, "m BETWEEN 20 AND 24"),
    ("nurturing", "hot", 12, "m = 7"),
    ("hot", "nurturing", 14, "m = 7"),
    ("meeting", "hot", 20, "m < 10"),
    ("won", "meeting", 40, "m < 4"),
    ("lost", "nurturing", 15, "m BETWEEN 40 AND 44"),
]
_UTM = (
    "CASE (id / 40) % 4 WHEN 0 THEN 'google' WHEN 1 THEN 'newsletter' "
    "WHEN 2 THEN 'twitter' ELSE 'partner' END"
)
REPORT_JOURNEY: dict[str, Any] = {
    "key": "bench-welcome",
    "name": "bench welcome",
    "entry": {"triggers": [{"manual": True}]},
    "goal": {"tag": "customer"},
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "add_tag", "tag": "welcomed", "next": "w"},
        {"id": "w", "type": "wait", "duration": "3d", "next": "bye"},
        {"id": "bye", "type": "add_tag", "tag": "done"},
    ],
}


def add_report_history(engine: Engine, *, now: datetime, journey_id: int) -> None:
    """Give a generated population what the reports read: creation times spread over the
    365 days before ``now``, lifecycle stage history (skips, a move back, lost), a UTM source
    on one page view in 40, a dwell report for one page view in 5, and enrolments of one
    contact in 10 in journey ``journey_id`` (version 1 of REPORT_JOURNEY) with their steps."""
    pg = engine.dialect.name == "postgresql"
    now_text = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    def shift(column: str, seconds: str) -> str:
        if pg:
            return f"{column} + make_interval(secs => {seconds})"
        moved = f"strftime('%Y-%m-%d %H:%M:%S', {column}, '+' || ({seconds}) || ' seconds')"
        return f"{moved} || '.000000'"

    def back(seconds: str) -> str:
        if pg:
            return f"CAST(:now AS timestamp) - make_interval(secs => {seconds})"
        return f"strftime('%Y-%m-%d %H:%M:%S', :now, '-' || ({seconds}) || ' seconds') || '.000000'"

    with engine.begin() as conn:
        created = back("((id * 7919) % 365) * 86400 + (id * 37) % 86400")
        conn.execute(
            text(f"UPDATE contacts SET created_at = {created}, updated_at = {created}"),
            {"now": now_text},
        )
        conn.execute(
            text(
                "INSERT INTO stage_history (contact_id, kind, from_stage, to_stage, moved_at, "
                "source) SELECT id, 'lifecycle', NULL, 'acquired', created_at, 'entry' "
                "FROM contacts"
            )
        )
        for stage, before, days, where in _MOVES:
            at = shift("created_at", str(days * 86400))
            conn.execute(
                text(
                    "INSERT INTO stage_history (contact_id, kind, from_stage, to_stage, "
                    f"moved_at, source) SELECT id, 'lifecycle', '{before}', '{stage}', at, 'api' "
                    f"FROM (SELECT id, id % 100 AS m, {at} AS at FROM contacts) c "
                    f"WHERE {where} AND at < " + ("CAST(:now AS timestamp)" if pg else ":now"),
                ),
                {"now": now_text if pg else now_text + ".000000"},
            )
        conn.execute(
            text(
                "UPDATE contacts SET (lifecycle_stage, lifecycle_stage_at) = (SELECT h.to_stage, "
                "h.moved_at FROM stage_history h WHERE h.contact_id = contacts.id "
                "ORDER BY h.moved_at DESC, h.id DESC LIMIT 1)"
            )
        )
        utm = (
            f"jsonb_build_object('utm_source', {_UTM})"
            if pg
            else f"json_object('utm_source', {_UTM})"
        )
        conn.execute(
            text(f"UPDATE events SET properties = {utm} WHERE type = 'page' AND id % 40 = 0")
        )
        view = (
            "jsonb_build_object('page_message_id', 'pv' || id, 'path', path)"
            if pg
            else "json_object('page_message_id', 'pv' || id, 'path', path)"
        )
        conn.execute(
            text(
                "INSERT INTO events (type, contact_id, occurred_at, received_at, path, dwell_ms, "
                "properties, context, machine, source) "
                f"SELECT 'page_dwell', contact_id, {shift('occurred_at', '30')}, "
                f"{shift('occurred_at', '30')}, path, 1000 + (id * 7) % 120000, {view}, "
                + ("'{}'::jsonb" if pg else "'{}'")
                + ", machine, 'browser' FROM events WHERE type = 'page' AND id % 5 = 0"
            )
        )
        # one contact in 10 enrolled a day after creation; one enrolment in 3 converts at the
        # wait (the goal), the others complete three days later
        entered = shift("created_at", "86400")
        conn.execute(
            text(
                "INSERT INTO enrolments (journey_id, version, contact_id, node, state, steps, "
                "attempts, trigger, entered_at, ended_at) "
                f"SELECT :journey, 1, id, CASE WHEN id % 30 = 0 THEN 'w' ELSE 'bye' END, "
                f"CASE WHEN id % 30 = 0 THEN 'converted' ELSE 'completed' END, 3, 0, 'manual', "
                f"{entered}, {shift('created_at', str(4 * 86400))} "
                "FROM contacts WHERE id % 10 = 0"
            ),
            {"journey": journey_id},
        )
        detail = "'{}'::jsonb" if pg else "'{}'"
        for node, node_type, result, after, where in (
            ("hello", "add_tag", "next", 0, "1 = 1"),
            ("w", "wait", "waiting", 0, "1 = 1"),
            ("w", "wait", "converted", 3, "contact_id % 30 = 0"),
            ("w", "wait", "next", 3, "contact_id % 30 <> 0"),
            ("bye", "add_tag", "end", 3, "contact_id % 30 <> 0"),
        ):
            conn.execute(
                text(
                    "INSERT INTO enrolment_steps (enrolment_id, journey_id, contact_id, node, "
                    f"node_type, result, at, detail) SELECT id, journey_id, contact_id, "
                    f"'{node}', '{node_type}', '{result}', "
                    f"{shift('entered_at', str(after * 86400))}, "
                    f"{detail} FROM enrolments WHERE journey_id = :journey AND {where}"
                ),
                {"journey": journey_id},
            )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
