"""Rule-based scores: the points are right, capped, decayed, explained and kept current."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.consent import unsubscribe
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.scoring import definitions
from ekiden.scoring.examples import BEHAVIOUR, FIT
from ekiden.scoring.models import ScoreIn
from ekiden.scoring.service import current_scores, explain, history, recompute_scores
from ekiden.scoring.tables import score_awards, score_rules
from ekiden.segments.models import SegmentIn
from ekiden.segments.service import create_segment
from ekiden.segments.tables import segment_members
from ekiden.tracking.events import NewEvent, record_events
from ekiden.worker import Worker, wait_until_idle


def person(engine: Engine, clock: FrozenClock, email: str, **fields: Any) -> int:
    with engine.begin() as conn:
        return upsert_contact(
            conn, clock, email=email, changes=ContactChanges(**fields), source_kind="api"
        ).contact_id


def act(
    engine: Engine, clock: FrozenClock, contact_id: int, kind: str = "page", **fields: Any
) -> None:
    with engine.begin() as conn:
        record_events(
            conn,
            clock,
            [NewEvent(type=kind, occurred_at=clock.now(), source="api", contact_id=contact_id,
                      **fields)],
        )  # fmt: skip


def define(engine: Engine, clock: FrozenClock, settings: Settings, data: dict[str, Any]) -> None:
    with engine.begin() as conn:
        definitions.create_score(conn, clock, ScoreIn.model_validate(data), settings.zone)
        recompute_scores(conn, clock, settings, score_keys=[data["key"]])


def scores(engine: Engine, contact_id: int) -> dict[str, float]:
    with engine.connect() as conn:
        return current_scores(conn, [contact_id]).get(contact_id, {})


def settle(engine: Engine, clock: FrozenClock, settings: Settings) -> None:
    wait_until_idle(Worker(engine, clock, settings))


def test_bucho_earns_five_fit_points_and_kacho_three(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    bucho = person(engine, clock, "bucho@example.co.jp", job_title="部長", industry="製造業")
    kacho = person(engine, clock, "kacho@example.co.jp", job_title="課長")
    other = person(engine, clock, "tanto@example.co.jp", job_title="担当")
    define(engine, clock, settings, FIT)
    assert scores(engine, bucho) == {"fit": 8.0}  # 部長 +5, good-fit industry +3
    assert scores(engine, kacho) == {"fit": 3.0}
    assert scores(engine, other) == {}  # no points: no value at all


def test_profile_points_follow_the_contact_when_the_title_changes(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, FIT)
    contact = person(engine, clock, "p@example.co.jp", job_title="課長")
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"fit": 3.0}
    clock.advance(timedelta(days=40))
    person(engine, clock, "p@example.co.jp", job_title="部長")
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"fit": 5.0}
    with engine.connect() as conn:
        changes = history(conn, contact, score_key="fit")
    assert [(h.previous, h.value) for h in changes] == [(3.0, 5.0), (0.0, 3.0)]


def test_event_rules_score_each_matching_event_and_negative_points_subtract(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "e@example.co.jp")
    act(engine, clock, contact, "form_submitted", properties={"form": "document-a"})
    act(engine, clock, contact, "form_submitted", properties={"form": "document-b"})
    act(engine, clock, contact, "form_submitted", properties={"form": "webinar"})
    act(engine, clock, contact, path="/blog/scoring")  # no rule
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"behaviour": 6.0}  # 1 + 2 + 3
    act(engine, clock, contact, path="/careers/engineer")
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"behaviour": 3.0}


def test_machine_activity_never_scores(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "m@example.co.jp")
    act(engine, clock, contact, path="/pricing", machine=True, machine_reason="scanner")
    act(engine, clock, contact, "form_submitted", properties={"form": "document-b"}, machine=True)
    settle(engine, clock, settings)
    assert scores(engine, contact) == {}
    act(engine, clock, contact, path="/pricing")
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"behaviour": 3.0}


def test_a_rule_cap_limits_points_per_period_and_a_new_period_scores_again(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "c@example.co.jp")
    for _ in range(5):  # product pages: +5 each, at most 10 per 7 days
        act(engine, clock, contact, path="/products/ma")
    settle(engine, clock, settings)
    # the example's product-detail points decay (half-life 30 days); no time has passed
    assert scores(engine, contact) == {"behaviour": 10.0}
    with engine.connect() as conn:
        awarded = conn.execute(select(score_awards.c.points).order_by(score_awards.c.id))
        assert list(awarded.scalars()) == [5.0, 5.0]
    clock.advance(timedelta(days=7))
    act(engine, clock, contact, path="/products/ma")
    settle(engine, clock, settings)
    value = scores(engine, contact)["behaviour"]
    assert value == pytest.approx(10 * 0.5 ** (7 / 30) + 5, abs=1e-3)


def test_a_partial_cap_awards_the_remainder(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    rule = {"key": "visit", "points": 4, "cap_points": 10, "cap_days": 1,
            "event": {"event": "page"}}  # fmt: skip
    define(engine, clock, settings, {"key": "visits", "name": "Visits", "rules": [rule]})
    contact = person(engine, clock, "r@example.co.jp")
    for _ in range(4):
        act(engine, clock, contact, path="/")
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"visits": 10.0}  # 4 + 4 + 2, then nothing


def test_the_score_cap_bounds_the_total_and_the_explanation_says_so(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    data = {**FIT, "max_points": 6}
    contact = person(engine, clock, "x@example.co.jp", job_title="部長", industry="製造業")
    define(engine, clock, settings, data)
    assert scores(engine, contact) == {"fit": 6.0}
    with engine.connect() as conn:
        fit = next(s for s in explain(conn, clock, contact).scores if s.key == "fit")
    assert fit.total_now == 8.0
    assert fit.capped


def test_points_lose_half_their_value_after_the_half_life(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "d@example.co.jp")
    act(engine, clock, contact, path="/pricing")  # +3, half-life 30 days
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"behaviour": 3.0}
    clock.advance(timedelta(days=30))
    settle(engine, clock, settings)  # the time-driven sweep, no new activity
    assert scores(engine, contact)["behaviour"] == pytest.approx(1.5, abs=1e-3)
    clock.advance(timedelta(days=30))
    settle(engine, clock, settings)
    assert scores(engine, contact)["behaviour"] == pytest.approx(0.75, abs=1e-3)


def test_expiring_points_count_fully_until_they_expire(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "k@example.co.jp")
    act(engine, clock, contact, path="/catalog/2026")  # +1 for 90 days
    settle(engine, clock, settings)
    clock.advance(timedelta(days=89))
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"behaviour": 1.0}
    clock.advance(timedelta(days=2))
    settle(engine, clock, settings)
    assert scores(engine, contact) == {}
    with engine.connect() as conn:
        changes = history(conn, contact, score_key="behaviour")
    assert [(h.previous, h.value) for h in changes] == [(1.0, 0.0), (0.0, 1.0)]


def test_unsubscribing_subtracts_points(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "u@example.co.jp")
    act(engine, clock, contact, "form_submitted", properties={"form": "webinar"})
    settle(engine, clock, settings)
    with engine.begin() as conn:
        unsubscribe(conn, clock, contact, source="unsubscribe")
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"behaviour": -7.0}


def test_long_dwell_on_case_studies_scores_and_a_glance_does_not(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "w@example.co.jp")
    act(engine, clock, contact, "page_dwell", path="/case-studies/acme", dwell_ms=15_000)
    settle(engine, clock, settings)
    assert scores(engine, contact) == {}
    act(engine, clock, contact, "page_dwell", path="/case-studies/acme", dwell_ms=180_000)
    settle(engine, clock, settings)
    assert scores(engine, contact) == {"behaviour": 4.0}


def test_the_explanation_lists_rule_event_and_points_and_sums_to_the_score(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    define(engine, clock, settings, FIT)
    contact = person(engine, clock, "why@example.co.jp", job_title="部長")
    act(engine, clock, contact, path="/pricing")
    clock.advance(timedelta(days=10))
    act(engine, clock, contact, "form_submitted", properties={"form": "document-b"})
    clock.advance(timedelta(days=5))
    settle(engine, clock, settings)
    with engine.connect() as conn:
        found = {s.key: s for s in explain(conn, clock, contact).scores}
    behaviour = found["behaviour"]
    assert [(a.rule, a.event_type, a.points) for a in behaviour.awards] == [
        ("document-b", "form_submitted", 2.0),
        ("pricing", "page", 3.0),
    ]
    assert behaviour.awards[1].event_path == "/pricing"
    assert behaviour.awards[1].points_now == pytest.approx(3 * 0.5 ** (15 / 30), abs=1e-3)
    assert sum(a.points_now for a in behaviour.awards) == pytest.approx(behaviour.value, abs=1e-4)
    assert found["fit"].value == 5.0
    assert [(a.rule, a.kind, a.event_id) for a in found["fit"].awards] == [
        ("bucho", "profile", None)
    ]


def test_a_rule_change_is_applied_to_everyone_by_the_worker(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    bucho = person(engine, clock, "b@example.co.jp", job_title="部長")
    kacho = person(engine, clock, "k@example.co.jp", job_title="課長")
    define(engine, clock, settings, FIT)
    changed = {**FIT, "rules": [{**FIT["rules"][0], "points": 7}, *FIT["rules"][1:]]}
    with engine.begin() as conn:
        definitions.replace_score(
            conn, clock, "fit", ScoreIn.model_validate(changed), settings.zone
        )
        assert not definitions.get_score(conn, "fit").built
    assert scores(engine, bucho) == {"fit": 5.0}  # not yet
    settle(engine, clock, settings)
    assert scores(engine, bucho) == {"fit": 7.0}
    assert scores(engine, kacho) == {"fit": 3.0}
    with engine.connect() as conn:
        assert definitions.get_score(conn, "fit").built


def test_a_disabled_rule_awards_nothing(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    contact = person(engine, clock, "off@example.co.jp", job_title="部長")
    define(engine, clock, settings, FIT)
    rules = [{**r, "enabled": r["key"] != "bucho"} for r in FIT["rules"]]
    with engine.begin() as conn:
        definitions.replace_score(
            conn, clock, "fit", ScoreIn.model_validate({**FIT, "rules": rules}), settings.zone
        )
        recompute_scores(conn, clock, settings)
        bucho = select(score_rules.c.enabled).where(score_rules.c.key == "bucho")
        assert conn.execute(bucho).scalar() is False
    assert scores(engine, contact) == {}


def test_a_segment_on_a_score_follows_new_points_and_decay(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "s@example.co.jp")
    hot = {"field": "score.behaviour", "op": "gte", "value": 3}
    with engine.begin() as conn:
        create_segment(conn, clock, SegmentIn(slug="hot", name="hot", filter=hot), settings.zone)
    settle(engine, clock, settings)

    def members() -> set[int]:
        with engine.connect() as conn:
            return set(conn.execute(select(segment_members.c.contact_id)).scalars())

    assert members() == set()
    act(engine, clock, contact, path="/pricing")  # +3: enters in the same worker pass
    settle(engine, clock, settings)
    assert members() == {contact}
    clock.advance(timedelta(days=15))  # 3 → 2.12: decay alone takes it out
    settle(engine, clock, settings)
    assert members() == set()


def test_a_recompute_that_changes_nothing_keeps_the_ledger_rows(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "l@example.co.jp")
    for path in ("/pricing", "/pricing", "/products/ma", "/careers"):
        act(engine, clock, contact, path=path)
    settle(engine, clock, settings)
    ledger = select(score_awards.c.id, score_awards.c.rule_id, score_awards.c.points)
    with engine.connect() as conn:
        before = conn.execute(ledger.order_by(score_awards.c.id)).all()
    with engine.begin() as conn:
        recompute_scores(conn, clock, settings)
    with engine.connect() as conn:
        assert conn.execute(ledger.order_by(score_awards.c.id)).all() == before
    assert len(before) == 4


def test_event_rules_match_paths_and_properties_whatever_their_latin_case(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    # a value with Latin letters matches whatever their case ("/PRICING", "/Pricing/Plans",
    # form "Document-B"), but only A-Z fold: a full-width "ｐ" is another letter; and a
    # prefix is a prefix ("/en/pricing" only contains it, "/prici" is too short)
    define(engine, clock, settings, BEHAVIOUR)
    pricing = person(engine, clock, "upper@example.co.jp")
    act(engine, clock, pricing, path="/PRICING")
    act(engine, clock, pricing, path="/Pricing/Plans")
    act(engine, clock, pricing, "form_submitted", properties={"form": "Document-B"})
    other = person(engine, clock, "other@example.co.jp")
    for path in ("/ｐricing", "/Äpricing", "/en/pricing", "/prici"):
        act(engine, clock, other, path=path)
    settle(engine, clock, settings)
    assert scores(engine, pricing) == {"behaviour": 8.0}  # 3 + 3 + 2
    assert scores(engine, other) == {}
    # a full recompute (one pass over all events) finds the same
    with engine.begin() as conn:
        recompute_scores(conn, clock, settings)
    assert scores(engine, pricing) == {"behaviour": 8.0}
    assert scores(engine, other) == {}


def test_a_first_build_and_a_rebuild_over_the_ledger_give_the_same_awards(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    # an empty ledger is written directly; an existing one by differences: same result
    define(engine, clock, settings, BEHAVIOUR)
    contacts = [person(engine, clock, f"r{i}@example.co.jp") for i in range(3)]
    for i, contact in enumerate(contacts):
        for path in ["/products/a", "/products/b", "/products/c", "/pricing", "/careers"][i:]:
            act(engine, clock, contact, path=path)
            clock.advance(timedelta(hours=30))
    settle(engine, clock, settings)
    awards = select(
        score_awards.c.rule_id, score_awards.c.contact_id, score_awards.c.event_id,
        score_awards.c.awarded_at, score_awards.c.points,
    )  # fmt: skip

    def ledger() -> set[tuple[Any, ...]]:
        with engine.connect() as conn:
            return {tuple(row) for row in conn.execute(awards)}

    def values() -> dict[int, dict[str, float]]:
        with engine.connect() as conn:
            return current_scores(conn, contacts)

    with engine.begin() as conn:  # a rule change: the cap now allows three product pages
        conn.execute(
            score_rules.update().where(score_rules.c.key == "product-detail").values(cap_points=15)
        )
        recompute_scores(conn, clock, settings)
    merged, merged_values = ledger(), values()
    assert sorted(p for *_, p in merged) == sorted([5.0] * 6 + [3.0] * 3 + [-3.0] * 3)
    with engine.begin() as conn:
        conn.execute(score_awards.delete())
        recompute_scores(conn, clock, settings)
    assert ledger() == merged
    assert values() == merged_values


def test_a_full_recompute_puts_back_the_session_settings_it_raises(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    # a whole-population pass raises the sort memory (work_mem / the page cache) and turns
    # nested loops off for itself; the rest of the caller's transaction and the pooled
    # connection keep what they had
    define(engine, clock, settings, BEHAVIOUR)
    contact = person(engine, clock, "s@example.co.jp")
    act(engine, clock, contact, path="/pricing")
    if engine.dialect.name == "postgresql":
        probe = "SELECT current_setting('work_mem') || ' ' || current_setting('enable_nestloop')"
    else:
        probe = "PRAGMA cache_size"
    with engine.begin() as conn:
        before = conn.exec_driver_sql(probe).scalar_one()
        recompute_scores(conn, clock, settings)
        assert conn.exec_driver_sql(probe).scalar_one() == before
    assert scores(engine, contact) == {"behaviour": 3.0}
