"""The shipped example journeys (R13, R14, R15) loaded with one command and played through
every branch, and the adjust_score step with its manual awards."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tags import tags_of
from ekiden.errors import Invalid, NotFound
from ekiden.journeys import bundled
from ekiden.messaging.sends_tables import email_messages
from ekiden.outbox.tables import outbox
from ekiden.tracking.events import NewEvent, record_events
from ekiden.worker import wait_until_idle
from test_journey_actions import Partner
from test_journeys import journey_worker, person, start, state_of, submit


def cli(*args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def happen(engine: Engine, clock: FrozenClock, contact: int, kind: str, **extra: Any) -> None:
    path = extra.pop("path", None)
    source = extra.pop("source", "api")
    event = NewEvent(
        type=kind,
        occurred_at=clock.now(),
        source=source,
        contact_id=contact,
        path=path,
        properties=extra,
    )
    with engine.begin() as conn:
        record_events(conn, clock, [event])


def activate(admin: TestClient, key: str) -> None:
    """Through the API, which runs on the test's clock (triggers count facts after this)."""
    answer = admin.post(f"/api/journeys/{key}/activate")
    assert answer.status_code == 200, answer.text


def mails(engine: Engine) -> dict[int, list[str]]:
    """Template keys queued per contact, in order."""
    out: dict[int, list[str]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(email_messages.c.contact_id, email_messages.c.template_key).order_by(
                email_messages.c.id
            )
        )
        for row in rows:
            out.setdefault(row.contact_id, []).append(row.template_key)
    return out


@pytest.fixture
def loaded(settings: Settings, monkeypatch: Any) -> str:
    """The examples loaded through the command line, as an operator would."""
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    return cli("journeys", "examples", "--load")


def test_examples_list_and_load_once_with_their_templates_and_forms(
    loaded: str, admin: TestClient
) -> None:
    shipped = bundled.examples()
    assert [e.key for e in shipped] == ["survey-sample", "engagement-followup", "missed-call"]
    listed = cli("journeys", "examples")
    for example in shipped:
        assert example.key in listed
    journeys = {j["key"]: j for j in admin.get("/api/journeys").json()["items"]}
    assert {k: j["status"] for k, j in journeys.items()} == {
        "survey-sample": "draft",
        "engagement-followup": "draft",
        "missed-call": "draft",
    }
    assert "シナリオ 3 件" in loaded
    templates = {e["key"] for e in shipped[0].emails + shipped[1].emails}
    for key in templates:
        assert admin.get(f"/api/emails/{key}").status_code == 200, key
    for slug in ("survey", "sample", "newsletter", "documents"):
        assert admin.get(f"/api/forms/{slug}").status_code == 200, slug
    again = cli("journeys", "examples", "--load")  # nothing is created twice or overwritten
    assert "シナリオ 0 件" in again
    assert all(j["version"] == 1 for j in admin.get("/api/journeys").json()["items"])


def test_loading_examples_keeps_a_template_the_marketer_already_has(
    settings: Settings, admin: TestClient, monkeypatch: Any
) -> None:
    mine = {"key": "sample-offer", "name": "mine", "subject": "自作の件名", "html": "<p>自作</p>"}
    assert admin.post("/api/emails", json=mine).status_code == 201
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    cli("journeys", "examples", "--load")
    assert admin.get("/api/emails/sample-offer").json()["subject"] == "自作の件名"
    assert admin.get("/api/emails/sale-announcement").status_code == 200


def test_r13_survey_sample_example_played_with_worker_once_now(
    loaded: str,
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin: TestClient,
    monkeypatch: Any,
) -> None:
    from ekiden.auth.users import create_user
    from ekiden.lifecycle.tables import sales_tasks

    monkeypatch.setenv("EKIDEN_WEBHOOK_SECRET", "whsec_" + base64.b64encode(b"k" * 32).decode())
    partner = Partner()
    try:
        # the operator points the shipped journey at their partner, then starts it
        definition = admin.get("/api/journeys/survey-sample").json()["definition"]
        for node in definition["nodes"]:
            if node["type"] == "webhook":
                node["url"] = partner.url
        assert admin.put("/api/journeys/survey-sample", json=definition).status_code == 200
        activate(admin, "survey-sample")

        def play(days: float) -> None:
            moment = clock.now() + timedelta(days=days)
            for _ in range(2):  # a second run at the same moment changes nothing
                cli("worker", "--once", "--now", moment.isoformat())
            clock.set(moment)

        with engine.begin() as conn:
            seller = create_user(
                conn, clock, email="sales@example.jp", password="long-enough-pw", role="sales"
            )
        asker = person(engine, clock, "asker@example.jp", owner_id=seller.id)
        silent = person(engine, clock, "silent@example.jp")
        quiet = person(engine, clock, "quiet@example.jp")
        other = person(engine, clock, "other@example.jp")
        submit(engine, clock, asker, "survey")
        submit(engine, clock, silent, "survey")
        submit(engine, clock, quiet, "survey")
        submit(engine, clock, other, "newsletter")  # another form: not enrolled
        play(0.01)
        assert mails(engine) == {c: ["sample-offer"] for c in (asker, silent, quiet)}

        clock.advance(timedelta(days=1))
        submit(engine, clock, asker, "sample")
        play(0.01)
        assert len(partner.requests) == 1
        headers, body = partner.requests[0]
        assert "webhook-signature" in {k.lower() for k in headers}
        sent = json.loads(body)
        assert (sent["contact"]["id"], sent["item"]) == (asker, "free-sample")
        assert state_of(engine, asker) == ("wait-delivery", "waiting")
        with engine.connect() as conn:
            told = conn.execute(select(outbox.c.payload).where(outbox.c.kind == "mail")).one()
        assert told.payload["to"] == ["sales@example.jp"]  # and sales hear of it at once
        assert "到着後3日以内" in told.payload["text"]
        with engine.connect() as conn:
            assert conn.execute(select(sales_tasks)).all() == []  # not before the arrival

        clock.advance(timedelta(days=2))
        happen(engine, clock, asker, "sample_delivered", carrier="partner")
        delivered_at = clock.now()
        play(0.01)
        with engine.connect() as conn:
            task = conn.execute(select(sales_tasks)).one()
        assert (task.contact_id, task.title, task.owner_id) == (
            asker,
            "到着後3日以内に電話",
            seller.id,
        )
        # due 3 days after the worker saw the arrival (it ran minutes after the report)
        assert task.due_at == clock.now() + timedelta(days=3)
        assert task.due_at - delivered_at < timedelta(days=3, hours=1)

        play(5)  # a week after the survey: the silent one never asked
        assert len(partner.requests) == 1
        coupons = admin.get(f"/api/contacts/{silent}/coupons").json()["items"]
        assert len(coupons) == 1
        assert coupons[0]["code"].startswith("SALE-")
        assert admin.get(f"/api/contacts/{asker}/coupons").json()["items"] == []
        other_code = admin.get(f"/api/contacts/{quiet}/coupons").json()["items"][0]["code"]
        assert other_code != coupons[0]["code"]  # each code belongs to one contact
        assert mails(engine) == {
            asker: ["sample-offer"],
            silent: ["sample-offer", "sale-announcement"],
            quiet: ["sample-offer", "sale-announcement"],
        }
        with engine.connect() as conn:
            hooks = conn.execute(select(outbox.c.contact_id).where(outbox.c.kind == "webhook"))
            assert hooks.scalars().all() == [asker]  # exactly once, despite repeated runs
        stats = admin.get("/api/journeys/survey-sample/stats").json()
        assert (stats["enrolled"], stats["completed"]) == (3, 3)
    finally:
        partner.close()


def test_r14_engagement_example_branches_on_opens_clicks_and_pages(
    loaded: str, engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    activate(admin, "engagement-followup")
    worker = journey_worker(engine, clock, settings)
    names = ("studies", "pricing", "late-pricing", "opened-only", "silent", "clicked-only")
    who = {n: person(engine, clock, f"{n}@example.jp") for n in names}
    for contact in who.values():
        submit(engine, clock, contact, "newsletter")
    wait_until_idle(worker)
    assert all(mails(engine)[c] == ["r14-intro"] for c in who.values())

    def email(name: str, kind: str, template: str) -> None:
        happen(engine, clock, who[name], kind, source="email", send_id=f"{name}-{template}",
               email=template)  # fmt: skip

    clock.advance(timedelta(days=1))
    for name in ("studies", "pricing", "opened-only", "clicked-only"):
        email(name, "email_opened", "r14-intro")
    wait_until_idle(worker)  # the opens wake the waits at once
    clock.advance(timedelta(days=2, hours=1))  # the others' 3 days are over
    wait_until_idle(worker)
    for name in ("studies", "pricing", "opened-only", "clicked-only"):
        assert mails(engine)[who[name]] == ["r14-intro", "r14-opener-followup"], name
    for name in ("late-pricing", "silent"):
        assert mails(engine)[who[name]] == ["r14-intro", "r14-reminder"], name

    clock.advance(timedelta(hours=5))
    happen(engine, clock, who["studies"], "page", path="/case-studies/acme")
    happen(engine, clock, who["pricing"], "page", path="/pricing")
    happen(engine, clock, who["late-pricing"], "page", path="/pricing/enterprise")
    for name in ("studies", "pricing", "clicked-only"):
        email(name, "email_clicked", "r14-opener-followup")
    email("late-pricing", "email_clicked", "r14-reminder")
    wait_until_idle(worker)
    clock.advance(timedelta(days=5))  # the non-clickers' waits time out
    wait_until_idle(worker)

    sent = mails(engine)
    assert sent[who["studies"]][-1] == "r14-case-study-docs"
    assert sent[who["pricing"]][-1] == "r14-campaign"
    assert sent[who["late-pricing"]] == ["r14-intro", "r14-reminder", "r14-campaign"]
    assert len(sent[who["opened-only"]]) == len(sent[who["silent"]]) == 2
    with engine.connect() as conn:
        assert tags_of(conn, who["clicked-only"]) == ["r14-clicked"]
        assert tags_of(conn, who["opened-only"]) == ["r14-no-click"]
        assert tags_of(conn, who["silent"]) == ["r14-no-click"]
    assert all(state_of(engine, c)[1] == "completed" for c in who.values())
    totals = Counter(t for keys in sent.values() for t in keys)
    assert totals == {
        "r14-intro": 6,
        "r14-opener-followup": 4,
        "r14-reminder": 2,
        "r14-case-study-docs": 1,
        "r14-campaign": 2,
    }


def test_r15_missed_call_example_leaves_an_onsite_message(
    loaded: str, engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    from ekiden.lifecycle.tables import sales_tasks

    activate(admin, "missed-call")
    worker = journey_worker(engine, clock, settings)
    missed = person(engine, clock, "missed@example.jp")
    reached = person(engine, clock, "reached@example.jp")
    quiet = person(engine, clock, "quiet@example.jp")
    for contact in (missed, reached, quiet):
        submit(engine, clock, contact, "documents")
    wait_until_idle(worker)
    with engine.connect() as conn:
        tasks = conn.execute(
            select(sales_tasks.c.contact_id, sales_tasks.c.title, sales_tasks.c.id)
        ).all()
    assert sorted(t[:2] for t in tasks) == sorted(
        (c, "資料請求のお礼の電話") for c in (missed, reached, quiet)
    )
    task_of = {t.contact_id: t.id for t in tasks}

    # sales call: one does not answer, one is reached; sales closes the tasks with the outcome
    clock.advance(timedelta(days=1))
    for contact, outcome in ((missed, "不在"), (reached, "話せた")):
        closed = admin.patch(
            f"/api/tasks/{task_of[contact]}", json={"status": "done", "outcome": outcome}
        )
        assert closed.status_code == 200, closed.text
    wait_until_idle(worker)
    messages = admin.get(f"/api/contacts/{missed}/onsite-messages").json()["items"]
    assert [m["message"] for m in messages] == ["何かお困りのことはありませんか?"]
    assert state_of(engine, missed) == ("onsite", "completed")
    assert state_of(engine, reached)[1] == "converted"
    assert admin.get(f"/api/contacts/{reached}/onsite-messages").json()["items"] == []

    clock.advance(timedelta(days=15))  # no outcome recorded at all: nothing shown
    wait_until_idle(worker)
    assert state_of(engine, quiet) == ("wait-outcome", "completed")
    assert admin.get(f"/api/contacts/{quiet}/onsite-messages").json()["items"] == []


def test_adjust_score_step_awards_points_that_survive_a_full_recompute(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    from ekiden.contacts.merge import merge_contacts
    from ekiden.scoring.examples import BEHAVIOUR
    from ekiden.scoring.service import adjust_score, explain, recompute_scores

    assert admin.post("/api/scores", json=BEHAVIOUR).status_code == 201
    start(
        admin,
        {
            "key": "bonus",
            "name": "bonus",
            "entry": {"triggers": [{"manual": True}]},
            "start": "n",
            "nodes": [{"id": "n", "type": "adjust_score", "score": "behaviour", "points": 15,
                       "label": "展示会で名刺交換"}],
        },
    )  # fmt: skip
    contact = person(engine, clock, "bonus@example.jp")
    admin.post("/api/journeys/bonus/enrolments", json={"contact_ids": [contact]})
    worker = journey_worker(engine, clock, settings)
    wait_until_idle(worker)
    wait_until_idle(worker)
    assert admin.get(f"/api/contacts/{contact}").json()["id"] == contact

    def value() -> float:
        with engine.connect() as conn:
            found = explain(conn, clock, contact)
        return next(s.value for s in found.scores if s.key == "behaviour")

    assert value() == 15
    with engine.begin() as conn:
        recompute_scores(conn, clock, settings)  # a full recompute keeps the manual award
        # the same ref awards once; another ref adds
        adjust_score(conn, clock, contact_id=contact, score_key="behaviour", points=-5,
                     reason="返品", ref="crm:1")  # fmt: skip
        again = adjust_score(conn, clock, contact_id=contact, score_key="behaviour", points=-5,
                             reason="返品", ref="crm:1")  # fmt: skip
    assert again == 10
    with engine.begin() as conn:
        recompute_scores(conn, clock, settings)
        found = explain(conn, clock, contact)
    behaviour = next(s for s in found.scores if s.key == "behaviour")
    assert behaviour.value == 10
    assert sorted((a.kind, a.rule_name, a.points) for a in behaviour.awards) == [
        ("manual", "展示会で名刺交換", 15.0),
        ("manual", "返品", -5.0),
    ]
    history = admin.get(f"/api/contacts/{contact}/scores/history").json()
    assert [h["value"] for h in history["items"]][:2] == [10.0, 15.0]
    score = admin.get("/api/scores/behaviour").json()
    assert all(not r["key"].startswith("manual:") for r in score["rules"])
    # a merge hands the loser's manual awards to the winner
    twin = person(engine, clock, "twin@example.jp")
    with engine.begin() as conn:
        adjust_score(conn, clock, contact_id=twin, score_key="behaviour", points=7,
                     reason="電話で商談化", ref="crm:2")  # fmt: skip
        merge_contacts(conn, clock, winner_id=contact, loser_id=twin, merged_by="test")
        recompute_scores(conn, clock, settings)
    assert value() == 17
    with engine.begin() as conn:
        with pytest.raises(NotFound):
            adjust_score(conn, clock, contact_id=contact, score_key="nope", points=1,
                         reason="x", ref="r")  # fmt: skip
        with pytest.raises(Invalid):
            adjust_score(conn, clock, contact_id=contact, score_key="behaviour", points=0,
                         reason="x", ref="r")  # fmt: skip
