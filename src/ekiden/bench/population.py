"""A generated, realistic population for benchmarks, written with set-based SQL.

Contacts: a job-title mix of a Japanese B2B database (部長 5 %, 本部長 1 %, 課長 10 %, …),
3 % unsubscribed. Events: page views over site sections (pricing ≈ 10 % of views), email
deliveries and opens, form submissions, spread over 180 days before ``now``, 5 % flagged as
machine activity. Generated inside the database (a recursive CTE on SQLite,
generate_series on PostgreSQL) so that ten million rows take seconds, not minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime

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
