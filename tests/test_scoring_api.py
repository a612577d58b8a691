"""The scores API and CLI: definitions in, clear errors for bad rules, explanations out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.scoring.examples import BEHAVIOUR, FIT
from ekiden.scoring.models import ScoreIn
from ekiden.tracking.events import NewEvent, record_events

Snapshot = Any


def person(engine: Engine, clock: FrozenClock, email: str, **fields: Any) -> int:
    with engine.begin() as conn:
        return upsert_contact(
            conn, clock, email=email, changes=ContactChanges(**fields), source_kind="api"
        ).contact_id


def test_create_list_and_read_a_score_as_json_and_yaml(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    bucho = person(engine, clock, "b@example.co.jp", job_title="部長")
    created = admin.post("/api/scores", json=FIT)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["built"] is True
    assert [r["key"] for r in body["rules"]] == ["bucho", "kacho", "good-fit-industry"]
    assert admin.get(f"/api/contacts/{bucho}/scores").json()["scores"][0]["value"] == 5.0
    assert [s["key"] for s in admin.get("/api/scores").json()["items"]] == ["fit"]
    as_yaml = admin.get("/api/scores/fit.yaml")
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert "部長" in as_yaml.text
    round_trip = yaml.safe_load(as_yaml.text)
    assert round_trip["rules"][0] == {**FIT["rules"][0], "points": 5.0, "enabled": True}
    assert admin.post("/api/scores", json=FIT).status_code == 409


def test_put_rule_changes_points_and_recomputes(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    kacho = person(engine, clock, "k@example.co.jp", job_title="課長")
    admin.post("/api/scores", json=FIT)
    rule = {"key": "kacho", "points": 4, "when": {"field": "job_title", "op": "eq",
                                                  "value": "課長"}}  # fmt: skip
    changed = admin.put("/api/scores/fit/rules/kacho", json=rule)
    assert changed.status_code == 200, changed.text
    assert changed.json()["points"] == 4.0
    assert admin.get(f"/api/contacts/{kacho}/scores").json()["scores"][0]["value"] == 4.0
    assert admin.delete("/api/scores/fit/rules/kacho").status_code == 204
    assert admin.get(f"/api/contacts/{kacho}/scores").json()["scores"][0]["value"] == 0.0
    assert admin.delete("/api/scores/fit/rules/kacho").status_code == 404
    history = admin.get(f"/api/contacts/{kacho}/scores/history?score=fit").json()["items"]
    assert [(h["previous"], h["value"]) for h in history] == [(4.0, 0.0), (3.0, 4.0), (0.0, 3.0)]


BAD_DEFINITIONS: list[tuple[dict[str, Any], str]] = [
        ({"rules": [{"key": "x", "points": "many", "event": {"event": "page"}}]}, "rules.0.points"),
        ({"rules": [{"key": "x", "points": True, "event": {"event": "page"}}]}, "rules.0.points"),
        ({"rules": [{"key": "x", "points": 1}]}, "exactly one of when"),
        ({"rules": [{"key": "x", "points": 1, "when": {"field": "shoe_size", "op": "eq",
                                                       "value": 3}}]}, "rules[0].when.field"),
        ({"rules": [{"key": "x", "points": 1, "when": {"all": [{"field": "job_title",
                                                                "op": "gt"}]}}]},
         "rules[0].when.all[0]"),
        ({"rules": [{"key": "x", "points": 1, "when": {"field": "score.fit", "op": "gt",
                                                       "value": 3}}]}, "cannot look at scores"),
        ({"rules": [{"key": "x", "points": 1, "event": {"event": "page", "where": [
            {"property": "a b", "op": "eq", "value": 1}]}}]}, "rules[0].event.where[0].property"),
        ({"rules": [{"key": "x", "points": 1, "cap_points": 3, "event": {"event": "page"}}]},
         "cap_points and cap_days"),
        ({"rules": [{"key": "x", "points": 1, "half_life_days": 3,
                     "when": {"tag": "vip"}}]}, "event rules only"),
        ({"rules": [{"key": "x", "points": 0, "event": {"event": "page"}}]}, "non-zero"),
        ({"rules": [{"key": "x", "points": 1, "event": {"event": "page"}},
                    {"key": "x", "points": 2, "event": {"event": "page"}}]}, "two rules"),
        ({"key": "Has Space"}, "key"),
        ({"max_points": 1, "min_points": 5}, "min_points is larger"),
]  # fmt: skip


def test_invalid_definitions_are_refused_naming_the_part_and_nothing_is_stored(
    admin: TestClient, stored: Snapshot
) -> None:
    before = stored()
    for change, named in BAD_DEFINITIONS:
        body = {"key": "bad", "name": "Bad", **change}
        for path in ("/api/scores", "/api/scores/validate"):
            answer = admin.post(path, json=body)
            assert answer.status_code == 422, (change, answer.text)
            assert named in answer.json()["error"]["message"], (change, answer.text)
    assert stored() == before


def test_validate_accepts_the_examples_without_storing_them(
    admin: TestClient, stored: Snapshot
) -> None:
    before = stored()
    for example in (BEHAVIOUR, FIT):
        answer = admin.post("/api/scores/validate", json=example)
        assert answer.json() == {"valid": True}, answer.text
    assert stored() == before


def test_unknown_scores_and_contacts_answer_404(admin: TestClient, stored: Snapshot) -> None:
    before = stored()
    rule = {"key": "a", "points": 1, "event": {"event": "page"}}
    assert admin.put("/api/scores/nope/rules/a", json=rule).json()["error"]["code"] == (
        "unknown_score"
    )
    assert admin.get("/api/scores/nope").status_code == 404
    assert admin.post("/api/scores/nope/recompute").status_code == 404
    assert admin.get("/api/contacts/999/scores").status_code == 404
    assert admin.delete("/api/scores/nope").status_code == 404
    assert stored() == before


def test_a_rule_whose_path_and_body_keys_differ_is_refused(
    admin: TestClient, stored: Snapshot
) -> None:
    admin.post("/api/scores", json=FIT)
    before = stored()
    rule = {"key": "other", "points": 1, "event": {"event": "page"}}
    answer = admin.put("/api/scores/fit/rules/kacho", json=rule)
    assert answer.status_code == 422
    assert "key" in answer.json()["error"]["message"]
    assert stored() == before


def test_leaders_list_the_highest_scores_first(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    kacho = person(engine, clock, "k@example.co.jp", job_title="課長")
    bucho = person(engine, clock, "b@example.co.jp", job_title="部長", industry="製造業")
    admin.post("/api/scores", json=FIT)
    items = admin.get("/api/scores/fit/leaders").json()["items"]
    assert items == [{"contact_id": bucho, "value": 8.0}, {"contact_id": kacho, "value": 3.0}]


def test_deleting_a_score_removes_its_values(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    bucho = person(engine, clock, "b@example.co.jp", job_title="部長")
    admin.post("/api/scores", json=FIT)
    assert admin.delete("/api/scores/fit").status_code == 204
    assert admin.get(f"/api/contacts/{bucho}/scores").json()["scores"] == []


def test_the_explanation_shows_each_event_behind_the_points(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    contact = person(engine, clock, "e@example.co.jp")
    with engine.begin() as conn:
        record_events(conn, clock, [
            NewEvent(type="page", occurred_at=clock.now(), source="api", contact_id=contact,
                     path="/pricing/enterprise"),
        ])  # fmt: skip
    admin.post("/api/scores", json=BEHAVIOUR)
    found = admin.get(f"/api/contacts/{contact}/scores").json()["scores"][0]
    assert found["value"] == 3.0
    (award,) = found["awards"]
    assert award["rule"] == "pricing"
    assert award["event_type"] == "page"
    assert award["event_path"] == "/pricing/enterprise"
    assert isinstance(award["event_id"], int)
    assert award["points"] == award["points_now"] == 3.0


PROTECTED: list[tuple[str, str, Any]] = [
    ("post", "/api/scores", FIT),
    ("post", "/api/scores/validate", FIT),
    ("post", "/api/scores/recompute", None),
    ("put", "/api/scores/fit", FIT),
    ("delete", "/api/scores/fit", None),
    ("post", "/api/scores/fit/recompute", None),
    ("put", "/api/scores/fit/rules/kacho", FIT["rules"][1]),
    ("delete", "/api/scores/fit/rules/kacho", None),
    ("get", "/api/scores", None),
    ("get", "/api/scores/fit.yaml", None),
    ("get", "/api/contacts/1/scores", None),
    ("get", "/api/contacts/1/scores/history", None),
]


def test_score_endpoints_need_an_admin_key(
    client: TestClient, ingest_key: str, stored: Snapshot
) -> None:
    before = stored()
    for method, path, body in PROTECTED:
        kwargs = {"json": body} if body is not None else {}
        assert getattr(client, method)(path, **kwargs).status_code == 401, path
        with_ingest = getattr(client, method)(
            path, headers={"Authorization": f"Bearer {ingest_key}"}, **kwargs
        )
        assert with_ingest.status_code == 403, path
    assert stored() == before


def test_cli_applies_a_yaml_definition_shows_it_and_recomputes(
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucho = person(engine, clock, "b@example.co.jp", job_title="部長")
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(FIT, allow_unicode=True), encoding="utf-8")
    runner = CliRunner()
    applied = runner.invoke(cli_app, ["scores", "apply", str(path)])
    assert applied.exit_code == 0, applied.output
    assert "created score fit with 3 rule(s)" in applied.output
    shown = runner.invoke(cli_app, ["scores", "show", "fit"])
    assert yaml.safe_load(shown.stdout)["rules"][0]["when"] == FIT["rules"][0]["when"]
    explained = runner.invoke(cli_app, ["scores", "explain", str(bucho)])
    assert "fit (属性スコア): 5" in explained.output
    assert "bucho" in explained.output
    again = runner.invoke(cli_app, ["scores", "recompute"])
    assert again.exit_code == 0, again.output
    assert "recomputed 1 score(s)" in again.output
    path.write_text(yaml.safe_dump({**FIT, "rules": [{"key": "x", "points": "lots"}]}))
    refused = runner.invoke(cli_app, ["scores", "apply", str(path)])
    assert refused.exit_code == 1
    assert "rules.0.points" in refused.output


def test_the_documented_example_scores_are_the_ones_the_tests_use() -> None:
    text = (Path(__file__).parent.parent / "docs" / "SCORING.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    documented = [ScoreIn.model_validate(yaml.safe_load(b)) for b in blocks]
    assert documented == [ScoreIn.model_validate(e) for e in (BEHAVIOUR, FIT)]
