"""The SQL compiler and the in-memory evaluator must agree on every filter and contact.

Hypothesis builds random populations (fields, custom values, tags, accounts, events with
properties, machine activity and email engagement) and random nested filters; each filter is
evaluated both ways, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, select

from ekiden.clock import FrozenClock
from ekiden.contacts.customfields import CustomFieldDefinition, define_field
from ekiden.contacts.tables import accounts, contact_tags, contacts, custom_fields
from ekiden.rules.fields import load_catalog
from ekiden.rules.loader import load_contact_data
from ekiden.rules.memory import Env, evaluate
from ekiden.rules.model import parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter
from ekiden.scoring.tables import contact_scores, score_definitions
from ekiden.tracking.tables import events

ZONE = ZoneInfo("Asia/Tokyo")
STATS = {"nontrivial": 0, "total": 0}
TEXTS = ["部長", "本部長", "課長", "Manager", "manager", "Sales MANAGER", "", "Ärzte", "a%_b"]
PATHS = ["/pricing", "/pricing/pro", "/Pricing", "/case-studies/acme", "/", "/careers"]
PROP_VALUES: list[Any] = ["pro", "Pro", "PRO plan", 5, 7.5, True, False, "", "5"]
EVENT_TYPES = ["page", "page_dwell", "form_submitted", "email_delivered", "email_opened",
               "email_clicked"]  # fmt: skip
SENDS = ["s1", "s2", "s3"]
SCORES = ["behaviour", "fit"]
SCORE_VALUES = [0.0, 3.0, 7.5, -2.0, 30.0]
CUSTOM = [
    CustomFieldDefinition(key="budget", label="予算", type="number"),
    CustomFieldDefinition(key="vip", label="VIP", type="boolean"),
    CustomFieldDefinition(key="launch", label="導入予定日", type="date"),
    CustomFieldDefinition(key="renewal_at", label="更新日時", type="datetime"),
    CustomFieldDefinition(key="tier", label="区分", type="choice", choices=["gold", "silver"]),
]


def offsets() -> st.SearchStrategy[timedelta]:
    # whole seconds: SQL and Python measure email delays in whole seconds
    return st.integers(-60 * 86400, 2 * 86400).map(lambda s: timedelta(seconds=s))


@st.composite
def event_rows(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(EVENT_TYPES))
    props: dict[str, Any] = {}
    if draw(st.booleans()):
        props["plan"] = draw(st.sampled_from(PROP_VALUES))
    if draw(st.booleans()):
        props["utm"] = {"source": draw(st.sampled_from(["google", "Google", "mail", 3]))}
    if kind.startswith("email_"):
        props["send_id"] = draw(st.sampled_from(SENDS))
    return {
        "type": kind,
        "offset": draw(offsets()),
        "path": draw(st.sampled_from([*PATHS, None])),
        "dwell_ms": draw(st.one_of(st.none(), st.integers(0, 400_000))),
        "properties": props,
        "machine": draw(st.booleans()),
    }


@st.composite
def contact_rows(draw: st.DrawFn) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    if draw(st.booleans()):
        custom["budget"] = draw(st.one_of(st.integers(-5, 500), st.floats(0, 100, width=32)))
    if draw(st.booleans()):
        custom["vip"] = draw(st.booleans())
    if draw(st.booleans()):
        custom["launch"] = draw(st.sampled_from(["2026-10-01", "2026-11-01", "2027-01-15"]))
    if draw(st.booleans()):
        custom["renewal_at"] = draw(
            st.sampled_from(["2026-10-01T00:00:00Z", "2026-11-01T12:30:00Z"])
        )
    if draw(st.booleans()):
        custom["tier"] = draw(st.sampled_from(["gold", "silver"]))
    return {
        "job_title": draw(st.sampled_from([*TEXTS, None])),
        "company": draw(st.sampled_from(["Acme", "acme corp", "株式会社エキデン", None])),
        "account": draw(st.sampled_from([None, 0, 1])),
        "custom": custom,
        "unsubscribed": draw(st.booleans()),
        "last_seen": draw(st.one_of(st.none(), offsets())),
        "stage": draw(st.sampled_from([None, "acquired", "hot", "won"])),
        "stage_at": draw(st.one_of(st.none(), offsets())),
        "tags": draw(st.sets(st.sampled_from(["a", "b", "vip"]), max_size=3)),
        "events": draw(st.lists(event_rows(), max_size=8)),
        # a contact without points in a score has no row (and counts as 0)
        "scores": {
            key: value
            for key in SCORES
            if (value := draw(st.sampled_from([None, *SCORE_VALUES]))) is not None
        },
    }


def comparison(values: st.SearchStrategy[Any], ops: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        op = draw(st.sampled_from(ops))
        if op in ("is_set", "is_empty"):
            return {"op": op}
        listed = st.lists(values, min_size=1, max_size=3).filter(
            lambda xs: len({type(x) if not isinstance(x, int | float) or isinstance(x, bool)
                            else float for x in xs}) == 1
        )  # fmt: skip
        if op in ("in", "not_in"):
            return {"op": op, "value": draw(listed)}
        if op == "between":
            return {"op": op, "value": sorted(draw(listed.filter(lambda xs: len(xs) == 2)))}
        return {"op": op, "value": draw(values)}

    return build()


ALL_OPS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "is_set", "is_empty", "between"]
TEXT_OPS = [*ALL_OPS, "contains", "not_contains", "starts_with", "ends_with"]
nonempty_texts = st.sampled_from([t for t in TEXTS if t] + ["MANAGER", "長", "acme"])


def text_comparison() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        comparison(st.sampled_from(TEXTS), ALL_OPS),
        comparison(nonempty_texts, ["contains", "not_contains", "starts_with", "ends_with"]),
    )


def leaf() -> st.SearchStrategy[dict[str, Any]]:
    numbers = st.one_of(st.integers(-5, 500), st.sampled_from([0.5, 50.0, 99.9]))
    dates = st.sampled_from(["2026-10-15", "2026-11-01", "2026-10-01T09:00:00+09:00"])
    fields = st.one_of(
        st.builds(lambda c: {"field": "job_title", **c}, text_comparison()),
        st.builds(lambda c: {"field": "company", **c}, text_comparison()),
        st.builds(lambda c: {"field": "custom.budget", **c}, comparison(numbers, ALL_OPS)),
        st.builds(
            lambda c: {"field": "custom.vip", **c},
            comparison(st.booleans(), ["eq", "ne", "in", "not_in", "is_set", "is_empty"]),
        ),
        st.builds(
            lambda c: {"field": "custom.launch", **c},
            comparison(st.sampled_from(["2026-10-15", "2026-11-01", "2027-01-15"]), ALL_OPS),
        ),
        st.builds(lambda c: {"field": "custom.renewal_at", **c}, comparison(dates, ALL_OPS)),
        st.builds(lambda c: {"field": "custom.tier", **c}, text_comparison()),
        st.builds(lambda c: {"field": "account.employees", **c}, comparison(numbers, ALL_OPS)),
        st.builds(lambda c: {"field": "account.name", **c}, text_comparison()),
        st.builds(lambda c: {"field": "last_seen_at", **c}, comparison(dates, ALL_OPS)),
        st.builds(
            lambda op, d: (
                {"field": st_field, "op": op, "value": d} if (st_field := "last_seen_at") else {}
            ),
            st.sampled_from(["within_last_days", "more_than_days_ago"]),
            st.integers(0, 70),
        ),
        st.builds(
            lambda op, d: {"field": "custom.launch", "op": op, "value": d},
            st.sampled_from(["within_last_days", "more_than_days_ago"]),
            st.integers(0, 70),
        ),
        st.builds(lambda v: {"field": "unsubscribed", "op": "eq", "value": v}, st.booleans()),
        st.builds(
            lambda c: {"field": "lifecycle_stage", **c},
            st.one_of(
                comparison(st.sampled_from(["acquired", "hot", "won", "HOT", ""]), ALL_OPS),
                comparison(st.sampled_from(["ho", "Won", "d"]), TEXT_OPS[len(ALL_OPS) :]),
            ),
        ),
        st.builds(lambda c: {"field": "lifecycle_stage_at", **c}, comparison(dates, ALL_OPS)),
        st.builds(
            lambda key, c: {"field": f"score.{key}", **c},
            st.sampled_from(SCORES),
            comparison(st.sampled_from([*SCORE_VALUES, 0, 5, -1]), ALL_OPS),
        ),
    )
    prop_values = st.sampled_from(PROP_VALUES)
    prop = st.one_of(
        st.builds(
            lambda c: {"property": "path", **c},
            comparison(st.sampled_from(PATHS), TEXT_OPS).filter(lambda c: c.get("value") != ""),
        ),
        st.builds(lambda c: {"property": "plan", **c}, comparison(prop_values, ALL_OPS)),
        st.builds(
            lambda c: {"property": "plan", **c},
            comparison(st.sampled_from(["pro", "PRO", "plan"]), ["contains", "starts_with"]),
        ),
        st.builds(
            lambda c: {"property": "utm.source", **c},
            comparison(st.sampled_from(["google", "mail", 3]), ALL_OPS),
        ),
    )
    behaviour = st.builds(
        lambda kind, where, bounds, window, machine, summed: {
            "event": kind, "where": where, **bounds, **window,
            "include_machine": machine, **({"sum": "dwell_ms"} if summed else {}),
        },
        st.sampled_from(EVENT_TYPES),
        st.lists(prop, max_size=2),
        st.sampled_from([{}, {"min": 2}, {"max": 0}, {"min": 1, "max": 2}, {"max": 1},
                         {"min": 0}, {"min": 150000}]),
        st.sampled_from([{}, {"within_days": 7}, {"within_days": 30.5},
                         {"since": "2026-10-20"}, {"since": "2026-10-20T12:00:00+09:00"}]),
        st.booleans(),
        st.booleans(),
    )  # fmt: skip
    engagement = st.builds(
        lambda metric, op, value, window, min_delivered: {
            "email": metric, "op": op, "value": value, **window, "min_delivered": min_delivered,
        },
        st.sampled_from(["open_rate", "click_rate", "median_minutes_to_open"]),
        st.sampled_from(["gt", "gte", "lt", "lte"]),
        st.sampled_from([0, 0.5, 0.7, 1, 60, 240, 1440.5]),
        st.sampled_from([{}, {"within_days": 30}]),
        st.integers(1, 3),
    )  # fmt: skip
    tags = st.builds(lambda t: {"tag": t}, st.sampled_from(["a", "b", "vip", "none"]))
    return st.one_of(fields, behaviour, engagement, tags)


filters = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=6,
)


def store_population(engine: Engine, clock: FrozenClock, population: list[dict[str, Any]]) -> None:
    now = clock.now()
    with engine.begin() as conn:
        for table in (contact_scores, score_definitions, events, contact_tags, contacts,
                      accounts, custom_fields):  # fmt: skip
            conn.execute(delete(table))
        for definition in CUSTOM:
            define_field(conn, clock, definition)
        for key in SCORES:
            conn.execute(
                insert(score_definitions).values(key=key, name=key, created_at=now, updated_at=now)
            )
        account_ids = [
            conn.execute(
                insert(accounts)
                .values(name=name, employees=size, created_at=now, updated_at=now, custom={})
                .returning(accounts.c.id)
            ).scalar_one()
            for name, size in (("Acme", 120), ("エキデン商事", None))
        ]
        for i, person in enumerate(population):
            contact_id = conn.execute(
                insert(contacts)
                .values(
                    email=f"p{i}@example.com",
                    job_title=person["job_title"],
                    company=person["company"],
                    account_id=None
                    if person["account"] is None
                    else account_ids[person["account"]],
                    custom=person["custom"],
                    unsubscribed_at=now if person["unsubscribed"] else None,
                    last_seen_at=None if person["last_seen"] is None else now + person["last_seen"],
                    lifecycle_stage=person["stage"],
                    lifecycle_stage_at=None
                    if person["stage_at"] is None
                    else now + person["stage_at"],
                    created_at=now,
                    updated_at=now,
                )
                .returning(contacts.c.id)
            ).scalar_one()
            for key, value in person["scores"].items():
                conn.execute(
                    insert(contact_scores).values(
                        contact_id=contact_id, score_key=key, value=value, updated_at=now
                    )
                )
            for tag in person["tags"]:
                conn.execute(
                    insert(contact_tags).values(contact_id=contact_id, tag=tag, created_at=now)
                )
            for event in person["events"]:
                conn.execute(
                    insert(events).values(
                        type=event["type"], contact_id=contact_id,
                        occurred_at=now + event["offset"],
                        received_at=now, path=event["path"], dwell_ms=event["dwell_ms"],
                        properties=event["properties"], context={}, machine=event["machine"],
                        source="api",
                    )
                )  # fmt: skip


@settings(
    max_examples=int(os.environ.get("EKIDEN_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(population=st.lists(contact_rows(), min_size=3, max_size=8),
       raw_filters=st.lists(filters, min_size=1, max_size=6))  # fmt: skip
def test_sql_and_memory_evaluators_agree(
    engine: Engine, clock: FrozenClock, population: list[dict[str, Any]], raw_filters: list[Any]
) -> None:
    store_population(engine, clock, population)
    with engine.connect() as conn:
        catalog = load_catalog(conn)
        ids = list(conn.execute(select(contacts.c.id).order_by(contacts.c.id)).scalars())
        people = {i: load_contact_data(conn, i) for i in ids}
        memory_env = Env(catalog=catalog, now=clock.now(), zone=ZONE)
        sql_env = SqlEnv(catalog=catalog, now=clock.now(), zone=ZONE, dialect=engine.dialect.name)
        for raw in raw_filters:
            flt = parse_filter(raw)
            in_sql = set(
                conn.execute(select(contacts.c.id).where(compile_filter(flt, sql_env))).scalars()
            )
            in_memory = {i for i, person in people.items() if evaluate(flt, person, memory_env)}
            assert in_sql == in_memory, raw
            STATS["nontrivial"] += 0 < len(in_sql) < len(ids)
            STATS["total"] += 1


def test_generated_filters_split_populations() -> None:
    """Guard against a vacuous agreement test: many generated filters must select some but
    not all contacts (runs after the property test in this module)."""
    if STATS["total"]:
        assert STATS["nontrivial"] >= 3, STATS
