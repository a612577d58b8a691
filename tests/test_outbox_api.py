"""The outbox over HTTP: listing entries, one entry, and retrying a failed one (admin key)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.outbox import Status, deliver_due, enqueue, entry_by_key


def add_failed_webhook(engine: Engine, clock: FrozenClock, settings: Settings) -> int:
    with engine.begin() as conn:
        entry_id = enqueue(
            conn,
            clock,
            kind="webhook",
            key="partner-1",
            payload={"url": "ftp://bad", "body": {}, "sign": True, "secret": "whsec_x"},
        )
        enqueue(
            conn, clock, kind="mail", key="later", payload={}, due_at=clock.now().replace(year=2027)
        )
    deliver_due(engine, clock, settings)
    assert entry_id is not None
    return entry_id


def test_list_shows_failed_entries_with_their_reason_and_hides_secrets(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    entry_id = add_failed_webhook(engine, clock, settings)
    answer = admin.get("/api/outbox", params={"status": "failed"})
    assert answer.status_code == 200
    [item] = answer.json()["items"]
    assert item["id"] == entry_id
    assert item["status"] == "failed"
    assert "http(s) URL" in item["last_error"]
    assert item["payload"]["secret"] == "***"
    assert answer.json()["next"] is None
    everything = admin.get("/api/outbox", params={"limit": 1}).json()
    assert len(everything["items"]) == 1
    assert everything["next"] is not None
    rest = admin.get("/api/outbox", params={"limit": 1, "cursor": everything["next"]}).json()
    assert rest["items"][0]["id"] != everything["items"][0]["id"]


def test_one_entry_and_unknown_entry(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    entry_id = add_failed_webhook(engine, clock, settings)
    assert admin.get(f"/api/outbox/{entry_id}").json()["key"] == "partner-1"
    assert admin.get("/api/outbox/999999").status_code == 404


def test_retry_makes_a_failed_entry_due_again(
    engine: Engine, clock: FrozenClock, settings: Settings, admin: TestClient
) -> None:
    entry_id = add_failed_webhook(engine, clock, settings)
    answer = admin.post(f"/api/outbox/{entry_id}/retry")
    assert answer.status_code == 200
    assert answer.json()["status"] == "pending"
    assert answer.json()["attempts"] == 0
    with engine.connect() as conn:
        entry = entry_by_key(conn, "partner-1")
    assert entry is not None
    assert entry.status is Status.PENDING
    assert entry.next_attempt_at == clock.now()
    again = admin.post(f"/api/outbox/{entry_id}/retry")
    assert again.status_code == 409


def test_outbox_endpoints_need_an_admin_key(
    engine: Engine, clock: FrozenClock, settings: Settings, client: TestClient, ingest_key: str
) -> None:
    entry_id = add_failed_webhook(engine, clock, settings)
    for method, path in [
        ("GET", "/api/outbox"),
        ("GET", f"/api/outbox/{entry_id}"),
        ("POST", f"/api/outbox/{entry_id}/retry"),
    ]:
        assert client.request(method, path).status_code == 401
        forbidden = client.request(method, path, headers={"Authorization": f"Bearer {ingest_key}"})
        assert forbidden.status_code == 403
    with engine.connect() as conn:
        entry = entry_by_key(conn, "partner-1")
    assert entry is not None
    assert entry.status is Status.FAILED  # the refused retry changed nothing
