"""Predictive scoring: features from behaviour and profile, training, stored predictions."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select, update
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tables import contact_tags, contacts
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.predictive.features import contact_features, section, seniority
from ekiden.predictive.outcomes import OutcomeSpec, classify
from ekiden.predictive.tables import predictions, predictive_models
from ekiden.predictive.training import rescore_due, score_open_leads, train
from ekiden.tracking.tables import events
from ekiden.worker import default_periodic_steps

WON = {"tag": "won"}
LOST = {"tag": "lost"}
SPEC = OutcomeSpec(outcome=WON, lost=LOST, window_days=90)


def add_contact(
    engine: Engine, clock: FrozenClock, *, age_days: int, tags: tuple[str, ...] = (), **fields: Any
) -> int:
    created = clock.now() - timedelta(days=age_days)
    with engine.begin() as conn:
        cid = conn.execute(
            insert(contacts)
            .values(custom={}, created_at=created, updated_at=created, **fields)
            .returning(contacts.c.id)
        ).scalar_one()
        for tag in tags:
            conn.execute(insert(contact_tags).values(contact_id=cid, tag=tag, created_at=created))
    return int(cid)


def add_events(
    engine: Engine, clock: FrozenClock, contact_id: int, kind: str, count: int, **fields: Any
) -> None:
    if not count:
        return
    fields.setdefault("properties", {})
    fields.setdefault("source", "api")
    fields.setdefault("machine", False)
    at = fields.pop("at", clock.now() - timedelta(days=3))
    with engine.begin() as conn:
        conn.execute(
            insert(events),
            [
                {"type": kind, "contact_id": contact_id, "occurred_at": at, "received_at": at,
                 "context": {}, **fields}
                for _ in range(count)
            ],
        )  # fmt: skip


def population(
    engine: Engine, clock: FrozenClock, *, won: int, lost: int, old: int, young: int, seed: int = 7
) -> dict[str, list[int]]:
    """Converters visit /pricing often and are mostly 部長; others rarely and are 担当."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {"won": [], "lost": [], "old": [], "young": []}
    plan = [("won", won, 200), ("lost", lost, 200), ("old", old, 200), ("young", young, 10)]
    at = clock.now() - timedelta(days=3)
    visits: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for group, size, age in plan:
            created = clock.now() - timedelta(days=age)
            for _ in range(size):
                keen = group == "won" or (group == "young" and rng.random() < 0.5)
                title = (
                    "部長" if keen and rng.random() < 0.7 else rng.choice(["担当", "課長", None])
                )
                cid = conn.execute(
                    insert(contacts)
                    .values(custom={}, created_at=created, updated_at=created, job_title=title)
                    .returning(contacts.c.id)
                ).scalar_one()
                if group in ("won", "lost"):
                    conn.execute(
                        insert(contact_tags).values(contact_id=cid, tag=group, created_at=created)
                    )
                pricing = rng.randint(3, 8) if keen else rng.randint(0, 2)
                paths = ["/pricing/enterprise"] * pricing + ["/blog/scoring"] * rng.randint(0, 5)
                visits += [
                    {"type": "page", "contact_id": cid, "occurred_at": at, "received_at": at,
                     "path": path, "properties": {}, "context": {}, "source": "api",
                     "machine": False}
                    for path in paths
                ]  # fmt: skip
                groups[group].append(int(cid))
        conn.execute(insert(events), visits)
    return groups


def test_training_with_too_few_outcomes_says_how_many_and_stores_nothing(
    engine: Engine, clock: FrozenClock, settings: Settings, stored: Any
) -> None:
    population(engine, clock, won=12, lost=5, old=40, young=3)
    before = stored()
    with pytest.raises(Invalid) as caught, engine.begin() as conn:
        train(conn, clock, SPEC, settings.zone)
    assert caught.value.code == "too_few_outcomes"
    assert "at least 30 converted" in caught.value.message
    assert "there are 12 converted and 45 not converted" in caught.value.message
    assert stored() == before


def test_outcomes_follow_the_conditions_and_the_observation_window(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    groups = population(engine, clock, won=3, lost=2, old=4, young=5)
    with engine.connect() as conn:
        found = classify(conn, clock.now(), SPEC, settings.zone)
    assert found.converted == groups["won"]
    assert found.not_converted == sorted(groups["lost"] + groups["old"])
    assert found.open == sorted(groups["old"] + groups["young"])


def test_unknown_field_in_the_outcome_is_refused_by_name(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    spec = OutcomeSpec(outcome={"field": "stage_of_deal", "op": "eq", "value": "won"}, lost=None)
    with pytest.raises(Invalid, match=r"outcome: .*stage_of_deal"), engine.connect() as conn:
        classify(conn, clock.now(), spec, settings.zone)


def test_training_learns_the_behaviour_signal_and_scores_every_open_lead(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    groups = population(engine, clock, won=60, lost=30, old=90, young=20)
    keen = add_contact(engine, clock, age_days=5, job_title="本部長")
    add_events(engine, clock, keen, "page", 9, path="/pricing")
    idle = add_contact(engine, clock, age_days=5, job_title="担当")
    with engine.begin() as conn:
        done = train(conn, clock, SPEC, settings.zone)
    assert (done.version, done.positives, done.negatives) == (1, 60, 120)
    assert done.evaluation.rows == 45  # a stratified quarter held out
    assert done.evaluation.auc > 0.85
    assert len(done.evaluation.deciles) == 10
    assert done.evaluation.deciles[-1].captured == pytest.approx(1.0)
    with engine.connect() as conn:
        rows = conn.execute(select(predictions.c.contact_id, predictions.c.probability))
        scored = dict(rows.all())
        factors = conn.execute(
            select(predictions.c.factors).where(predictions.c.contact_id == keen)
        ).scalar_one()
    open_leads = set(groups["old"] + groups["young"] + [keen, idle])
    assert set(scored) == open_leads
    assert scored[keen] > 0.5 > scored[idle]
    assert factors[0]["feature"] == "section./pricing"
    assert factors[0]["value"] == 9
    assert factors[0]["contribution"] > 0


def test_machine_activity_and_derived_events_are_not_behaviour(
    engine: Engine, clock: FrozenClock
) -> None:
    cid = add_contact(engine, clock, age_days=1)
    add_events(engine, clock, cid, "page", 2, path="/pricing")
    add_events(engine, clock, cid, "page", 5, path="/pricing", machine=True)
    add_events(engine, clock, cid, "stage_changed", 3, source="system")
    add_events(engine, clock, cid, "page_dwell", 1, path="/pricing", dwell_ms=45_000)
    with engine.connect() as conn:
        table = contact_features(conn, clock.now(), [cid])
    row = dict(zip(table.columns, table.rows[0], strict=True))
    assert row["events.page"] == 2
    assert row["section./pricing"] == 2
    assert "events.stage_changed" not in row
    assert row["dwell_seconds"] == 45.0
    assert row["days_since_last_activity"] == pytest.approx(3.0)


def test_email_rates_count_each_message_once(engine: Engine, clock: FrozenClock) -> None:
    reader = add_contact(engine, clock, age_days=1)
    quiet = add_contact(engine, clock, age_days=1)
    for send in ("s1", "s2", "s3", "s4"):
        add_events(engine, clock, reader, "email_delivered", 1, properties={"send_id": send})
    add_events(engine, clock, reader, "email_opened", 3, properties={"send_id": "s1"})
    add_events(engine, clock, reader, "email_opened", 1, properties={"send_id": "s2"})
    add_events(engine, clock, reader, "email_clicked", 2, properties={"send_id": "s2"})
    add_events(engine, clock, reader, "email_clicked", 4, properties={"send_id": "s3"},
               machine=True)  # fmt: skip
    with engine.connect() as conn:
        table = contact_features(conn, clock.now(), [reader, quiet])
    first, second = (dict(zip(table.columns, r, strict=True)) for r in table.rows)
    assert first["email_open_rate"] == 0.5
    assert first["email_click_rate"] == 0.25
    assert second["email_open_rate"] is None


@pytest.mark.parametrize(
    ("title", "level"),
    [("営業本部長", "executive"), ("代表取締役社長", "executive"),
     ("マーケティング部長", "director"), ("Head of Sales", "director"),
     ("課長代理", "manager"), ("Marketing Manager", "manager"),
     ("営業担当", "staff"), ("顧問", "other"), ("  ", None), (None, None)],
)  # fmt: skip
def test_job_titles_map_to_seniority(title: str | None, level: str | None) -> None:
    assert seniority(title) == level


def test_site_sections_are_first_path_segments() -> None:
    assert section("/Pricing/enterprise?x=1") == "/pricing"
    assert section("/") == "/"
    assert section(None) == "/"


def test_retraining_adds_a_version_and_rescoring_follows_new_behaviour(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    groups = population(engine, clock, won=40, lost=20, old=60, young=10)
    with engine.begin() as conn:
        train(conn, clock, SPEC, settings.zone)
        train(conn, clock, SPEC, settings.zone)
    lead = groups["young"][0]
    with engine.connect() as conn:
        versions = conn.execute(select(predictive_models.c.version)).scalars().all()
        before = conn.execute(
            select(predictions.c.probability).where(predictions.c.contact_id == lead)
        ).scalar_one()
    assert sorted(versions) == [1, 2]
    add_events(engine, clock, lead, "page", 12, path="/pricing")
    with engine.begin() as conn:
        assert score_open_leads(conn, clock, settings.zone) == 70
    with engine.connect() as conn:
        after = conn.execute(
            select(predictions.c.probability).where(predictions.c.contact_id == lead)
        ).scalar_one()
        used = conn.execute(select(func.count()).select_from(predictions)).scalar_one()
    assert after > before
    assert used == 70


def test_rescoring_without_a_model_is_not_found(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    with pytest.raises(NotFound, match="ekiden model train"), engine.begin() as conn:
        score_open_leads(conn, clock, settings.zone)


def test_prediction_api_lists_open_leads_by_probability(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    groups = population(engine, clock, won=40, lost=20, old=60, young=10)
    trained = admin.post("/api/predictive/train", json={"outcome": WON, "lost": LOST})
    assert trained.status_code == 201, trained.text
    assert trained.json()["version"] == 1
    assert trained.json()["scored"] == 70
    lead = groups["young"][0]
    one = admin.get(f"/api/contacts/{lead}/prediction")
    assert one.status_code == 200
    assert 0 < one.json()["probability"] < 1
    assert one.json()["model_version"] == 1
    assert {"feature", "value", "contribution"} <= set(one.json()["factors"][0])
    assert admin.get(f"/api/contacts/{groups['won'][0]}/prediction").status_code == 404
    seen: list[float] = []
    ids: list[int] = []
    cursor = None
    while True:
        page = admin.get("/api/predictive/leads", params={"limit": 25, "cursor": cursor}).json()
        seen += [item["probability"] for item in page["items"]]
        ids += [item["contact_id"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(ids) == len(set(ids)) == 70
    assert seen == sorted(seen, reverse=True)
    listed = admin.get("/api/predictive/models").json()["items"]
    assert [m["version"] for m in listed] == [1]
    assert listed[0]["metrics"]["auc"] > 0.5
    assert admin.get("/api/predictive/models/1").json()["positives"] == 40
    assert admin.get("/api/predictive/models/2").status_code == 404


def test_training_api_refuses_too_few_outcomes_with_counts(
    engine: Engine, clock: FrozenClock, admin: TestClient, stored: Any
) -> None:
    population(engine, clock, won=5, lost=5, old=5, young=1)
    before = stored()
    answer = admin.post("/api/predictive/train", json={"outcome": WON, "lost": LOST})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "too_few_outcomes"
    assert answer.json()["error"]["details"] == {
        "needed": 30, "converted": 5, "not_converted": 10
    }  # fmt: skip
    assert stored() == before
    bad = admin.post("/api/predictive/train", json={"outcome": WON, "lost": None, "extra": 1})
    assert bad.status_code == 422


def test_predictive_endpoints_need_an_admin_key(client: TestClient, ingest_key: str) -> None:
    calls = [("post", "/api/predictive/train"), ("get", "/api/predictive/leads"),
             ("get", "/api/contacts/1/prediction"), ("get", "/api/predictive/models")]  # fmt: skip
    for method, path in calls:
        assert client.request(method, path, json={}).status_code == 401
        answer = client.request(
            method, path, json={}, headers={"Authorization": f"Bearer {ingest_key}"}
        )
        assert answer.status_code == 403


def test_cli_trains_reports_and_rescores(
    engine: Engine, clock: FrozenClock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    population(engine, clock, won=40, lost=20, old=60, young=10)
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    runner = CliRunner()
    args = ["model", "train", "--outcome", '{"tag": "won"}', "--lost", '{"tag": "lost"}']
    result = runner.invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert "model version 1: 40 converted, 80 not converted" in result.output
    assert "ROC-AUC" in result.output
    report = runner.invoke(cli_app, ["model", "report"])
    assert report.exit_code == 0, report.output
    assert "lift by decile" in report.output
    assert "section./pricing" in report.output
    rescored = runner.invoke(cli_app, ["model", "score"])
    assert rescored.exit_code == 0, rescored.output
    few = runner.invoke(cli_app, [*args, "--min-each", "50"])
    assert few.exit_code == 1
    assert "at least 50 converted" in few.output
    bad = runner.invoke(cli_app, ["model", "train", "--outcome", "{not json"])
    assert bad.exit_code == 1
    assert "--outcome: not valid JSON" in bad.output


def test_a_stored_model_that_cannot_be_read_asks_for_retraining(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    population(engine, clock, won=30, lost=10, old=30, young=5)
    with engine.begin() as conn:
        train(conn, clock, SPEC, settings.zone)
        conn.execute(update(predictive_models).values(model=b"\x80\x05not a model"))
    with pytest.raises(Conflict, match="ekiden model train"), engine.begin() as conn:
        score_open_leads(conn, clock, settings.zone)


def test_worker_rescores_open_leads_once_a_day(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    groups = population(engine, clock, won=30, lost=10, old=30, young=5)
    assert rescore_due(engine, clock, settings) == 0  # no model yet
    with engine.begin() as conn:
        train(conn, clock, SPEC, settings.zone)
    lead = groups["young"][0]
    add_events(engine, clock, lead, "page", 12, path="/pricing/enterprise")
    clock.advance(timedelta(hours=23))
    assert rescore_due(engine, clock, settings) == 0
    with engine.connect() as conn:
        query = select(predictions.c.probability).where(predictions.c.contact_id == lead)
        before = conn.execute(query).scalar_one()
    clock.advance(timedelta(hours=2))
    assert rescore_due(engine, clock, settings) == 35
    assert rescore_due(engine, clock, settings) == 0
    with engine.connect() as conn:
        assert conn.execute(query).scalar_one() > before
    assert "predictions" in dict(default_periodic_steps())


def test_default_outcomes_are_the_won_and_lost_lifecycle_stages(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    won = add_contact(engine, clock, age_days=5, lifecycle_stage="won")
    lost = add_contact(engine, clock, age_days=5, lifecycle_stage="lost")
    hot = add_contact(engine, clock, age_days=5, lifecycle_stage="hot")
    quiet = add_contact(engine, clock, age_days=120, lifecycle_stage="nurturing")
    with engine.connect() as conn:
        found = classify(conn, clock.now(), OutcomeSpec(), settings.zone)
    assert found.converted == [won]
    assert found.not_converted == [lost, quiet]
    assert found.open == [hot, quiet]
