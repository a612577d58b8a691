"""Calibration of rule scores against outcomes (R6): lift with intervals, bands, points."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tables import contact_tags, contacts
from ekiden.predictive.calibration import RuleInput, calibrate, rate_ratio, wilson
from ekiden.scoring.tables import contact_scores, score_awards, score_definitions, score_rules

# 400 contacts: 部長 (100, 30 converted), 課長 (100, 10 converted), neither (200, 10 converted)
BUCHO = frozenset(range(100))
KACHO = frozenset(range(100, 200))
CONVERTED = set(range(30)) | set(range(100, 110)) | set(range(200, 210))
OUTCOMES = {cid: cid in CONVERTED for cid in range(400)}
SCORES = dict.fromkeys(BUCHO, 5.0) | dict.fromkeys(KACHO, 3.0)
RULES = [RuleInput("bucho", "部長", 5, BUCHO), RuleInput("kacho", "課長", 3, KACHO)]


def test_wilson_interval_matches_the_hand_computed_one() -> None:
    # 30 / 100: centre (0.3 + z²/200) / (1 + z²/100), margin z·sqrt(0.0021 + z²/40000) / (…)
    found = wilson(30, 100)
    assert found.value == 0.3
    assert found.low == pytest.approx(0.218949, abs=1e-6)
    assert found.high == pytest.approx(0.395848, abs=1e-6)
    assert wilson(0, 0).value is None


def test_lift_interval_is_the_log_scale_katz_interval() -> None:
    # (30/100) / (20/300) = 4.5; se = sqrt(1/30 - 1/100 + 1/20 - 1/300) = sqrt(0.07)
    lift = rate_ratio(30, 100, 20, 300)
    assert lift.value == pytest.approx(4.5)
    assert lift.low == pytest.approx(4.5 * 0.595380, rel=1e-5)  # exp(-1.959964 · 0.264575)
    assert lift.high == pytest.approx(4.5 * 1.679601, rel=1e-5)


def test_lift_with_no_conversion_adds_one_half_to_each_count() -> None:
    # (0.5/10.5) / (5.5/50.5) = 0.437229; se = sqrt(2 - 1/10.5 + 1/5.5 - 1/50.5) = 1.437629
    lift = rate_ratio(0, 10, 5, 50)
    assert lift.value == 0
    assert lift.low == pytest.approx(0.437229 / 16.739, rel=1e-3)
    assert lift.high == pytest.approx(0.437229 * 16.739, rel=1e-3)
    assert rate_ratio(3, 0, 5, 50).value is None


def test_rules_get_lift_rates_and_points_fitted_from_outcomes() -> None:
    result = calibrate(RULES, OUTCOMES, SCORES, regularisation=1e6)
    bucho, kacho = result.rules
    assert (result.contacts, result.converted) == (400, 50)
    assert (bucho.triggered, bucho.triggered_converted) == (100, 30)
    assert (bucho.others, bucho.others_converted) == (300, 20)
    assert bucho.rate_triggered.value == 0.3
    assert bucho.lift.value == pytest.approx(4.5)
    assert kacho.lift.value == pytest.approx((10 / 100) / (40 / 300))
    # nearly unregularised on disjoint groups: logit(rate) - logit(base rate 10/200)
    assert bucho.weight == pytest.approx(2.097141, abs=1e-3)
    assert kacho.weight == pytest.approx(0.747214, abs=1e-3)
    # scaled so the strongest rule keeps the largest current points: 0.747 · 5 / 2.097 = 1.78
    assert (bucho.suggested_points, kacho.suggested_points) == (5, 2)


def test_regularisation_shrinks_weights_towards_zero() -> None:
    loose = calibrate(RULES, OUTCOMES, SCORES, regularisation=1e6).rules[0].weight
    tight = calibrate(RULES, OUTCOMES, SCORES, regularisation=0.01).rules[0].weight
    assert loose is not None
    assert tight is not None
    assert 0 < tight < loose


def test_a_rule_nobody_triggered_has_no_lift_and_no_suggestion() -> None:
    unused = RuleInput("webinar", "webinar", 3, frozenset())
    result = calibrate([*RULES, unused], OUTCOMES, SCORES)
    last = result.rules[-1]
    assert last.triggered == 0
    assert last.lift.value is None
    assert last.rate_triggered.value is None
    assert last.suggested_points is None


def test_conversion_by_score_band() -> None:
    result = calibrate(RULES, OUTCOMES, SCORES, bands=[0, 3, 5])
    found = [(b.low, b.high, b.contacts, b.converted) for b in result.bands]
    assert found == [(0, 3, 200, 10), (3, 5, 100, 10), (5, None, 100, 30)]
    assert result.bands[2].rate.value == 0.3
    quintiles = calibrate(RULES, OUTCOMES, SCORES).bands
    assert [(b.low, b.contacts) for b in quintiles] == [(0, 200), (3, 100), (5, 100)]
    above = calibrate(RULES, OUTCOMES, SCORES, bands=[4]).bands
    assert [(b.low, b.high, b.contacts) for b in above] == [(0, 4, 300), (4, None, 100)]


# --- stored scores --------------------------------------------------------------------


def stored_score(engine: Engine, clock: FrozenClock) -> dict[int, int]:
    """The 400-contact example above in the scoring tables; returns example id -> contact id."""
    now = clock.now()
    old = now - timedelta(days=200)
    ids: dict[int, int] = {}
    with engine.begin() as conn:
        score_id = conn.execute(
            insert(score_definitions)
            .values(key="fit", name="Fit", created_at=now, updated_at=now)
            .returning(score_definitions.c.id)
        ).scalar_one()
        rule_ids = {}
        for position, (key, points) in enumerate([("bucho", 5.0), ("kacho", 3.0)]):
            rule_ids[key] = conn.execute(
                insert(score_rules)
                .values(score_id=score_id, key=key, name=key, kind="profile", points=points,
                        condition={"field": "job_title", "op": "eq", "value": key},
                        position=position, created_at=now, updated_at=now)
                .returning(score_rules.c.id)
            ).scalar_one()  # fmt: skip
        for n in range(400):
            cid = conn.execute(
                insert(contacts)
                .values(custom={}, created_at=old, updated_at=old)
                .returning(contacts.c.id)
            ).scalar_one()
            ids[n] = cid
            if n in CONVERTED:
                conn.execute(insert(contact_tags).values(contact_id=cid, tag="won", created_at=now))
            rule = "bucho" if n in BUCHO else "kacho" if n in KACHO else None
            if rule is None:
                continue
            for _ in range(2):  # a rule firing twice is still one trigger
                conn.execute(
                    insert(score_awards).values(
                        rule_id=rule_ids[rule], score_id=score_id, contact_id=cid,
                        awarded_at=old, points=SCORES[n] / 2,
                    )
                )  # fmt: skip
            conn.execute(
                insert(contact_scores).values(
                    contact_id=cid, score_key="fit", value=SCORES[n], updated_at=now
                )
            )
    return ids


OUTCOME_QUERY = {"outcome": '{"tag": "won"}', "lost": '{"tag": "lost"}', "bands": "0,3,5"}


def test_calibration_api_reads_the_scoring_tables(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    stored_score(engine, clock)
    answer = admin.get("/api/scores/fit/calibration", params=OUTCOME_QUERY)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["contacts"], body["converted"]) == (400, 50)
    bucho = body["rules"][0]
    assert (bucho["key"], bucho["points"], bucho["triggered"]) == ("bucho", 5, 100)
    assert bucho["lift"]["value"] == pytest.approx(4.5)
    assert bucho["lift"]["low"] == pytest.approx(2.679210, rel=1e-5)
    assert bucho["suggested_points"] == 5
    assert body["rules"][1]["suggested_points"] < 3
    assert [b["contacts"] for b in body["bands"]] == [200, 100, 100]


def test_calibration_api_errors_name_the_problem(
    engine: Engine, clock: FrozenClock, admin: TestClient, client: TestClient, ingest_key: str
) -> None:
    stored_score(engine, clock)
    missing = admin.get("/api/scores/nope/calibration", params=OUTCOME_QUERY)
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]["message"]
    bad = admin.get("/api/scores/fit/calibration", params={**OUTCOME_QUERY, "outcome": "{x"})
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("outcome:")
    unknown = admin.get(
        "/api/scores/fit/calibration",
        params={**OUTCOME_QUERY, "outcome": '{"field": "nothing", "op": "eq", "value": 1}'},
    )
    assert unknown.status_code == 422
    assert "nothing" in unknown.json()["error"]["message"]
    bands = admin.get("/api/scores/fit/calibration", params={**OUTCOME_QUERY, "bands": "0,x"})
    assert bands.status_code == 400
    del client.headers["Authorization"]
    assert client.get("/api/scores/fit/calibration").status_code == 401
    ingest = client.get(
        "/api/scores/fit/calibration", headers={"Authorization": f"Bearer {ingest_key}"}
    )
    assert ingest.status_code == 403


def test_cli_prints_rules_side_by_side_with_suggested_points(
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored_score(engine, clock)
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    args: list[Any] = ["model", "calibrate", "fit", "--outcome", '{"tag": "won"}']
    result = CliRunner().invoke(cli_app, [*args, "--lost", "", "--bands", "0,3,5"])
    assert result.exit_code == 0, result.output
    assert "400 contacts with a known outcome, 50 converted" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("bucho"))
    assert "30.0% [21.9%, 39.6%]" in line
    assert "4.50 [2.68, 7.56]" in line
    assert "≥ 5" in result.output
    missing = CliRunner().invoke(cli_app, ["model", "calibrate", "nope", "--lost", ""])
    assert missing.exit_code == 1
