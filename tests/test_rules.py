"""The filter language on a small hand-built population, with the expected answers worked out
by hand — the same answers from the SQL compiler and the in-memory evaluator."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, select

from ekiden.clock import FrozenClock
from ekiden.contacts.customfields import CustomFieldDefinition, define_field
from ekiden.contacts.tables import contact_tags, contacts
from ekiden.errors import Invalid
from ekiden.rules.bind import check
from ekiden.rules.fields import load_catalog
from ekiden.rules.loader import load_contact_data
from ekiden.rules.memory import Env, evaluate
from ekiden.rules.model import parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter
from ekiden.scoring.tables import contact_scores, score_definitions
from ekiden.tracking.tables import events

ZONE = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def people(engine: Engine, clock: FrozenClock) -> dict[str, int]:
    """bucho: 部長, two human /pricing views this week, one by a scanner, 4 min on case studies,
    opened 2 of 2 emails within 1 h. kacho: 課長, one /pricing view 40 days ago, opened 1 of 3
    after 10 h. anon-title: no job title, unsubscribed. vip: tagged, budget 120."""
    now = clock.now()
    with engine.begin() as conn:
        define_field(conn, clock, CustomFieldDefinition(key="budget", label="予算", type="number"))
        ids = {}
        for name, title, unsub, custom in (
            ("bucho", "部長", False, {}),
            ("kacho", "課長", False, {"budget": 30}),
            ("anon-title", None, True, {}),
            ("vip", "Manager", False, {"budget": 120}),
        ):
            ids[name] = conn.execute(
                insert(contacts)
                .values(email=f"{name}@example.jp", job_title=title, custom=custom,
                        unsubscribed_at=now if unsub else None, created_at=now, updated_at=now)
                .returning(contacts.c.id)
            ).scalar_one()  # fmt: skip
        conn.execute(insert(contact_tags).values(contact_id=ids["vip"], tag="vip", created_at=now))
        # scores: bucho 42, kacho 3 in behaviour; the others have no points (count as 0)
        conn.execute(
            insert(score_definitions).values(
                key="behaviour", name="行動", created_at=now, updated_at=now
            )
        )
        for who, value in (("bucho", 42.0), ("kacho", 3.0)):
            conn.execute(
                insert(contact_scores).values(
                    contact_id=ids[who], score_key="behaviour", value=value, updated_at=now
                )
            )

        def event(who: str, kind: str, ago: timedelta, **extra: Any) -> None:
            conn.execute(
                insert(events).values(type=kind, contact_id=ids[who], occurred_at=now - ago,
                                      received_at=now, context={}, source="api",
                                      properties=extra.pop("properties", {}), **extra)
            )  # fmt: skip

        event("bucho", "page", timedelta(days=1), path="/pricing")
        event("bucho", "page", timedelta(days=2), path="/Pricing/enterprise")
        event("bucho", "page", timedelta(days=2), path="/pricing", machine=True)
        event("bucho", "page_dwell", timedelta(days=3), path="/case-studies/a", dwell_ms=150_000)
        event("bucho", "page_dwell", timedelta(days=3), path="/case-studies/b", dwell_ms=90_000)
        for send, opened_after in (("s1", timedelta(minutes=30)), ("s2", timedelta(minutes=50))):
            event("bucho", "email_delivered", timedelta(days=5), properties={"send_id": send})
            event("bucho", "email_opened", timedelta(days=5) - opened_after,
                  properties={"send_id": send})  # fmt: skip
        event("kacho", "page", timedelta(days=40), path="/pricing")
        for send in ("k1", "k2", "k3"):
            event("kacho", "email_delivered", timedelta(days=6), properties={"send_id": send})
        event("kacho", "email_opened", timedelta(days=6) - timedelta(hours=10),
              properties={"send_id": "k1"})  # fmt: skip
        event("kacho", "email_opened", timedelta(days=6) - timedelta(seconds=5),
              properties={"send_id": "k2"}, machine=True)  # fmt: skip
    return ids


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"field": "job_title", "op": "in", "value": ["部長", "本部長"]}, {"bucho"}),
    ({"field": "job_title", "op": "ne", "value": "部長"}, {"kacho", "anon-title", "vip"}),
    ({"field": "job_title", "op": "contains", "value": "manag"}, {"vip"}),
    ({"field": "job_title", "op": "is_empty"}, {"anon-title"}),
    ({"field": "custom.budget", "op": "gte", "value": 100}, {"vip"}),
    ({"field": "custom.budget", "op": "lt", "value": 100}, {"kacho"}),
    ({"field": "unsubscribed", "op": "eq", "value": True}, {"anon-title"}),
    ({"tag": "vip"}, {"vip"}),
    ({"not": {"tag": "vip"}}, {"bucho", "kacho", "anon-title"}),
    # two human pricing views in 30 days (the scanner's view does not count; case folded)
    ({"event": "page", "min": 2, "within_days": 30,
      "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}]}, {"bucho"}),
    ({"event": "page", "min": 3, "include_machine": True,
      "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}]}, {"bucho"}),
    # at most 0 pricing views in the last 30 days: everyone but bucho
    ({"event": "page", "max": 0, "within_days": 30,
      "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}]},
     {"kacho", "anon-title", "vip"}),
    # 4 minutes on case studies
    ({"event": "page_dwell", "sum": "dwell_ms", "min": 180_000,
      "where": [{"property": "path", "op": "starts_with", "value": "/case-studies"}]}, {"bucho"}),
    # R7: opened ≥ 70 % within 4 hours (median); kacho opened 1 of 3 (the machine open is not his)
    ({"all": [{"email": "open_rate", "op": "gte", "value": 0.7},
              {"email": "median_minutes_to_open", "op": "lte", "value": 240}]}, {"bucho"}),
    ({"email": "open_rate", "op": "lt", "value": 0.5}, {"kacho"}),
    ({"email": "median_minutes_to_open", "op": "gte", "value": 600}, {"kacho"}),
    ({"field": "score.behaviour", "op": "gte", "value": 30}, {"bucho"}),
    ({"field": "score.behaviour", "op": "lt", "value": 5}, {"kacho", "anon-title", "vip"}),
    ({"field": "score.behaviour", "op": "eq", "value": 0}, {"anon-title", "vip"}),
    ({"field": "score.behaviour", "op": "between", "value": [1, 10]}, {"kacho"}),
    ({"all": [{"field": "job_title", "op": "in", "value": ["部長", "課長"]},
              {"event": "page", "within_days": 60,
               "where": [{"property": "path", "op": "eq", "value": "/PRICING"}]}]},
     {"bucho", "kacho"}),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_filters_select_the_contacts_worked_out_by_hand(
    engine: Engine, clock: FrozenClock, people: dict[str, int], raw: Any, expected: set[str]
) -> None:
    names = {v: k for k, v in people.items()}
    flt = parse_filter(raw)
    with engine.connect() as conn:
        catalog = load_catalog(conn)
        check(flt, catalog, ZONE)
        env = SqlEnv(catalog, clock.now(), ZONE, engine.dialect.name)
        by_sql = {
            names[i]
            for i in conn.execute(select(contacts.c.id).where(compile_filter(flt, env))).scalars()
        }
        memory = Env(catalog, clock.now(), ZONE)
        in_memory = {
            n for n, i in people.items() if evaluate(flt, load_contact_data(conn, i), memory)
        }
    assert by_sql == expected
    assert in_memory == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"field": "custom.budget", "op": "eq", "value": "many"}, "value: must be a number"),
        ({"field": "custom.nope", "op": "eq", "value": 1}, "unknown field 'custom.nope'"),
        ({"all": [{"tag": "a"}, {"field": "job_title", "op": "within_last_days", "value": 3}]},
         "all[1].value: within_last_days applies to date fields"),
        ({"event": "page", "where": [{"property": "a b", "op": "eq", "value": 1}]},
         "where[0].property"),
        ({"any": [{"list": "missing"}]}, "any[0].list: no list 'missing'"),
        ({"field": "score.nope", "op": "gt", "value": 1}, "unknown field 'score.nope'"),
        ({"field": "score.behaviour", "op": "gt", "value": "high"}, "value: must be a number"),
    ],
)  # fmt: skip
def test_bad_filters_name_the_offending_part(
    engine: Engine, people: dict[str, int], raw: Any, message: str
) -> None:
    with engine.connect() as conn, pytest.raises(Invalid, match=message.replace("[", r"\[")):
        check(parse_filter(raw), load_catalog(conn), ZONE)


def test_yaml_and_json_give_the_same_filter() -> None:
    as_yaml = parse_filter("all:\n  - tag: vip\n  - {field: job_title, op: eq, value: 部長}\n")
    as_json = parse_filter(
        '{"all": [{"tag": "vip"}, {"field": "job_title", "op": "eq", "value": "部長"}]}'
    )
    assert as_yaml == as_json
