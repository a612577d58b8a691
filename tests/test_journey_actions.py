"""Journey actions that reach other capabilities: email, and the worker's command line."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tags import tags_of
from ekiden.journeys.tables import enrolments
from ekiden.messaging.sends_tables import email_messages
from ekiden.worker import Worker, wait_until_idle
from test_journeys import journey_worker, person, start

TEMPLATE = {
    "key": "welcome",
    "name": "welcome",
    "subject": "ようこそ",
    "html": "<p>こんにちは</p>",
}


def two_emails(cap: dict[str, Any] | None = None) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "key": "mails",
        "name": "mails",
        "entry": {"triggers": [{"manual": True}]},
        "start": "m1",
        "nodes": [
            {"id": "m1", "type": "send_email", "email": "welcome", "next": "w"},
            {"id": "w", "type": "wait", "duration": "1d", "next": "m2"},
            {"id": "m2", "type": "send_email", "email": "welcome"},
        ],
    }
    if cap is not None:
        definition["frequency_cap"] = cap
    return definition


def messages(engine: Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(email_messages.c.contact_id, email_messages.c.key).order_by("id")
        ).all()
    return [(r.contact_id, r.key) for r in rows]


def test_send_email_queues_one_message_per_visit(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    assert admin.post("/api/emails", json=TEMPLATE).status_code == 201
    start(admin, two_emails())
    contact = person(engine, clock, "mail@example.jp")
    admin.post("/api/journeys/mails/enrolments", json={"contact_ids": [contact]})
    worker = journey_worker(engine, clock, settings)
    wait_until_idle(worker)
    clock.advance(timedelta(days=2))
    wait_until_idle(worker)
    wait_until_idle(worker)
    sent = messages(engine)
    assert [c for c, _ in sent] == [contact, contact]
    assert len({k for _, k in sent}) == 2


def test_frequency_cap_skips_emails_over_the_cap(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    assert admin.post("/api/emails", json=TEMPLATE).status_code == 201
    start(admin, two_emails({"emails": 1, "per": "7d"}))
    contact = person(engine, clock, "capped@example.jp")
    admin.post("/api/journeys/mails/enrolments", json={"contact_ids": [contact]})
    worker = journey_worker(engine, clock, settings)
    wait_until_idle(worker)
    clock.advance(timedelta(days=2))
    wait_until_idle(worker)
    assert len(messages(engine)) == 1
    steps = admin.get(f"/api/contacts/{contact}/journeys").json()["items"][0]["steps"]
    assert [(s["node"], s["result"]) for s in steps][-1] == ("m2", "capped")


def test_a_template_deleted_after_activation_fails_the_enrolment_clearly(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    assert admin.post("/api/emails", json=TEMPLATE).status_code == 201
    start(admin, two_emails())
    assert admin.delete("/api/emails/welcome").status_code == 204
    contact = person(engine, clock, "gone@example.jp")
    admin.post("/api/journeys/mails/enrolments", json={"contact_ids": [contact]})
    wait_until_idle(journey_worker(engine, clock, settings))
    history = admin.get(f"/api/contacts/{contact}/journeys").json()["items"][0]
    assert history["state"] == "failed"
    assert "welcome" in history["last_error"]
    assert messages(engine) == []
    assert admin.get("/api/journeys/mails/stats").json()["failed"] == 1


def test_missing_template_is_refused_when_the_journey_is_saved(admin: TestClient) -> None:
    answer = admin.post("/api/journeys", json=two_emails())
    assert answer.status_code == 422
    assert "no email template 'welcome'" in answer.json()["error"]["message"]


def test_the_default_worker_runs_journeys(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    start(
        admin,
        {
            "key": "tagger",
            "name": "tagger",
            "entry": {"triggers": [{"manual": True}]},
            "start": "t",
            "nodes": [{"id": "t", "type": "add_tag", "tag": "tagged"}],
        },
    )
    contact = person(engine, clock, "default@example.jp")
    admin.post("/api/journeys/tagger/enrolments", json={"contact_ids": [contact]})
    report = wait_until_idle(Worker(engine, clock, settings))
    assert report.periodic["journeys"] == 1  # one enrolment moved, in one pass
    with engine.connect() as conn:
        assert tags_of(conn, contact) == ["tagged"]


def test_worker_once_now_plays_waits(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient, monkeypatch: Any
) -> None:
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    start(
        admin,
        {
            "key": "later",
            "name": "later",
            "entry": {"triggers": [{"manual": True}]},
            "start": "w",
            "nodes": [
                {"id": "w", "type": "wait", "duration": "3d", "next": "t"},
                {"id": "t", "type": "add_tag", "tag": "three-days-on"},
            ],
        },
    )
    contact = person(engine, clock, "later@example.jp")
    admin.post("/api/journeys/later/enrolments", json={"contact_ids": [contact]})
    runner = CliRunner()
    early = (clock.now() + timedelta(days=2)).isoformat()
    assert runner.invoke(cli_app, ["worker", "--once", "--now", early]).exit_code == 0
    with engine.connect() as conn:
        assert tags_of(conn, contact) == []
    late = (clock.now() + timedelta(days=3, minutes=1)).isoformat()
    result = runner.invoke(cli_app, ["worker", "--once", "--now", late])
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert tags_of(conn, contact) == ["three-days-on"]
        assert conn.execute(select(enrolments.c.state)).scalar_one() == "completed"


def test_sales_actions_move_the_stage_assign_create_a_task_and_notify(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    from ekiden.auth.users import create_user
    from ekiden.lifecycle.tables import sales_tasks
    from ekiden.outbox.tables import outbox

    with engine.begin() as conn:
        seller = create_user(
            conn, clock, email="sales@example.jp", password="long-enough-pw", role="sales"
        )
    start(
        admin,
        {
            "key": "handoff",
            "name": "引き継ぎ",
            "entry": {"triggers": [{"manual": True}]},
            "start": "own",
            "nodes": [
                {"id": "own", "type": "assign_owner", "user_id": seller.id, "next": "hot"},
                {"id": "hot", "type": "change_stage", "stage": "hot", "next": "task"},
                {"id": "task", "type": "create_task", "title": "3日以内に電話", "due_in": "3d",
                 "next": "tell"},
                {"id": "tell", "type": "notify_sales", "message": "サンプル到着",
                 "webhook_url": "http://chat.example/hook", "next": "back"},
                {"id": "back", "type": "change_stage", "stage": "won"},
            ],
        },
    )  # fmt: skip
    contact = person(engine, clock, "lead@example.jp", last_name="山田")
    admin.post("/api/journeys/handoff/enrolments", json={"contact_ids": [contact]})
    wait_until_idle(journey_worker(engine, clock, settings))
    with engine.connect() as conn:
        task = conn.execute(select(sales_tasks)).one()
        sent = conn.execute(select(outbox.c.kind, outbox.c.payload).order_by(outbox.c.id)).all()
    assert (task.contact_id, task.owner_id, task.title) == (contact, seller.id, "3日以内に電話")
    assert task.due_at == clock.now() + timedelta(days=3)
    assert [k for k, _ in sent] == ["mail", "webhook"]
    assert sent[0].payload["to"] == ["sales@example.jp"]
    assert "山田" in sent[0].payload["subject"]
    assert "サンプル到着" in sent[1].payload["body"]["text"]
    assert admin.get(f"/api/contacts/{contact}").json()["lifecycle_stage"] == "hot"
    history = admin.get(f"/api/contacts/{contact}/journeys").json()["items"][0]
    assert history["state"] == "completed"
    assert "skipped" in history["steps"][-1]["detail"]  # hot -> won skips the meeting


class Partner:
    """A shipping partner's endpoint: a real local HTTP server recording what it receives."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[dict[str, str], bytes]] = []
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                partner.requests.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ship"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sample_offer_scenario_played_with_worker_once_now(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient, monkeypatch: Any
) -> None:
    import base64
    import json

    from ekiden.lifecycle.tables import sales_tasks
    from ekiden.tracking.events import NewEvent, record_events

    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("EKIDEN_WEBHOOK_SECRET", "whsec_" + base64.b64encode(b"k" * 32).decode())
    partner = Partner()
    try:
        for key in ("sample-offer", "sale"):
            assert admin.post("/api/emails", json={**TEMPLATE, "key": key}).status_code == 201
        form = [{"property": "form", "op": "eq", "value": "sample"}]
        start(
            admin,
            {
                "key": "r13",
                "name": "アンケート回答者へのサンプル提供",
                "entry": {"triggers": [{"event": "form_submitted",
                          "where": [{"property": "form", "op": "eq", "value": "survey"}]}]},
                "start": "thanks",
                "nodes": [
                    {"id": "thanks", "type": "send_email", "email": "sample-offer",
                     "next": "requested"},
                    {"id": "requested", "type": "wait_for", "timeout": "7d", "next": "ship",
                     "event": {"event": "form_submitted", "where": form}, "on_timeout": "coupon"},
                    {"id": "ship", "type": "webhook", "url": partner.url,
                     "body": {"item": "sample"}, "next": "delivered"},
                    {"id": "delivered", "type": "wait_for", "timeout": "21d", "next": "call",
                     "event": {"event": "sample_delivered"}},
                    {"id": "call", "type": "create_task", "title": "到着後3日以内に電話",
                     "due_in": "3d"},
                    {"id": "coupon", "type": "issue_coupon", "prefix": "SALE-", "next": "sale"},
                    {"id": "sale", "type": "send_email", "email": "sale"},
                ],
            },
        )  # fmt: skip
        asker = person(engine, clock, "asker@example.jp")
        silent = person(engine, clock, "silent@example.jp")

        def happen(contact: int, kind: str, **properties: Any) -> None:
            event = NewEvent(
                type=kind,
                occurred_at=clock.now(),
                source="api",
                contact_id=contact,
                properties=properties,
            )
            with engine.begin() as conn:
                record_events(conn, clock, [event])

        def play(days: float) -> None:
            moment = clock.now() + timedelta(days=days)
            for _ in range(2):  # a second run at the same moment changes nothing
                result = CliRunner().invoke(
                    cli_app, ["worker", "--once", "--now", moment.isoformat()]
                )
                assert result.exit_code == 0, result.output
            clock.set(moment)

        happen(asker, "form_submitted", form="survey")
        happen(silent, "form_submitted", form="survey")
        play(0.01)
        clock.advance(timedelta(days=1))
        happen(asker, "form_submitted", form="sample")
        play(0.01)
        assert len(partner.requests) == 1
        headers, body = partner.requests[0]
        assert "webhook-signature" in {k.lower() for k in headers}
        assert json.loads(body)["contact"]["id"] == asker
        clock.advance(timedelta(days=2))
        happen(asker, "sample_delivered", carrier="partner")
        play(0.01)
        with engine.connect() as conn:
            task = conn.execute(select(sales_tasks)).one()
        assert (task.contact_id, task.title) == (asker, "到着後3日以内に電話")
        play(5)  # day 8: the silent one never asked
        assert len(partner.requests) == 1
        coupons = admin.get(f"/api/contacts/{silent}/coupons").json()["items"]
        assert coupons[0]["code"].startswith("SALE-")
        sent = messages(engine)
        assert sorted(c for c, _ in sent) == sorted([asker, silent, silent])
        stats = admin.get("/api/journeys/r13/stats").json()
        assert stats["completed"] == 2
    finally:
        partner.close()
