"""Sends to audiences: messages and outbox rows written together, in batches, never twice;
scheduling, cancelling, single messages, and the REST API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.errors import NotFound
from ekiden.messaging import sends
from ekiden.messaging.sending import send_email
from ekiden.messaging.sends_models import Audience, SendIn
from ekiden.messaging.sends_tables import email_messages, email_sends
from ekiden.outbox.tables import outbox
from ekiden.segments import lists
from ekiden.segments.models import ListIn, SegmentIn
from ekiden.segments.service import archive_segment, create_segment
from test_sending_support import add_contacts, add_template, statuses


def _run_sends(engine: Engine, clock: FrozenClock, settings: Settings) -> int:
    total = 0
    while done := sends.dispatch_due(engine, clock, settings):
        total += done
    return total


def _outbox(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)))


def _new_send(engine: Engine, clock: FrozenClock, settings: Settings, **fields: Any) -> int:
    data = SendIn.model_validate({"template": "news", **fields})
    with engine.begin() as conn:
        return sends.create_send(conn, clock, settings, data).id


def _list_of(engine: Engine, clock: FrozenClock, ids: list[int]) -> None:
    with engine.begin() as conn:
        lists.create_list(conn, clock, ListIn(slug="customers", name="Customers"))
        lists.add_members(conn, clock, "customers", ids, source="api")


def test_send_to_a_list_writes_a_message_and_an_outbox_row_per_allowed_recipient(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    allowed = add_contacts(engine, clock, 3)
    no_consent = add_contacts(engine, clock, 1, consent="none", prefix="n")
    _list_of(engine, clock, allowed + no_consent)
    send_id = _new_send(engine, clock, settings, audience={"list": "customers"})

    _run_sends(engine, clock, settings)

    assert statuses(engine) == {"queued": 3, "skipped": 1}
    with engine.connect() as conn:
        skipped = conn.execute(
            select(email_messages.c.contact_id, email_messages.c.reason).where(
                email_messages.c.status == "skipped"
            )
        ).one()
        send = sends.get_send(conn, send_id)
    assert tuple(skipped) == (no_consent[0], "no_consent")
    rows = _outbox(engine)
    assert sorted(r.key for r in rows) == sorted(f"email:{send_id}:{c}" for c in allowed)
    assert {r.kind for r in rows} == {"email"}
    assert send.status == "sent"
    assert send.recipients == 4


def test_a_repeated_batch_writes_nothing_twice(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    ids = add_contacts(engine, clock, 25)
    _list_of(engine, clock, ids)
    send_id = _new_send(engine, clock, settings, audience={"list": "customers"})
    _run_sends(engine, clock, settings)
    # as if the worker had died before recording its progress: the whole audience again
    with engine.begin() as conn:
        conn.execute(
            update(email_sends)
            .where(email_sends.c.id == send_id)
            .values(status="sending", cursor=0)
        )
    _run_sends(engine, clock, settings)

    assert statuses(engine) == {"queued": 25}
    assert len(_outbox(engine)) == 25


def test_large_audience_is_written_in_batches(
    engine: Engine, clock: FrozenClock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sends, "BATCH", 40)
    add_template(engine, clock)
    add_contacts(engine, clock, 100)
    send_id = _new_send(
        engine, clock, settings, audience={"filter": {"field": "email", "op": "is_set"}}
    )

    assert sends.dispatch_due(engine, clock, settings) == 40
    with engine.connect() as conn:
        assert sends.get_send(conn, send_id).status == "sending"
    assert _run_sends(engine, clock, settings) == 60 + 1  # two batches and the closing step
    assert statuses(engine) == {"queued": 100}
    assert len(_outbox(engine)) == 100


def test_filter_audience_selects_only_matching_contacts(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    ids = add_contacts(engine, clock, 4)
    _new_send(
        engine,
        clock,
        settings,
        audience={"filter": {"field": "last_name", "op": "in", "value": ["山田1", "山田3"]}},
    )
    _run_sends(engine, clock, settings)
    with engine.connect() as conn:
        got = set(conn.execute(select(email_messages.c.contact_id)).scalars())
    assert got == {ids[1], ids[3]}


def test_scheduled_send_waits_for_its_time(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    [contact] = add_contacts(engine, clock, 1)
    _new_send(
        engine,
        clock,
        settings,
        audience={"contact": contact},
        scheduled_at=(clock.now() + timedelta(hours=2)).isoformat(),
    )
    assert sends.dispatch_due(engine, clock, settings) == 0
    clock.advance(timedelta(hours=1, minutes=59))
    assert sends.dispatch_due(engine, clock, settings) == 0
    clock.advance(timedelta(minutes=1))
    _run_sends(engine, clock, settings)
    assert statuses(engine) == {"queued": 1}


def test_cancelling_skips_queued_messages_and_cancels_their_outbox_rows(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    ids = add_contacts(engine, clock, 5)
    _list_of(engine, clock, ids)
    send_id = _new_send(engine, clock, settings, audience={"list": "customers"})
    _run_sends(engine, clock, settings)
    with engine.begin() as conn:
        conn.execute(
            update(email_sends).where(email_sends.c.id == send_id).values(status="sending")
        )
        cancelled = sends.cancel_send(conn, clock, send_id)

    assert cancelled.status == "cancelled"
    assert statuses(engine) == {"skipped": 5}
    assert {r.status for r in _outbox(engine)} == {"cancelled"}


def test_send_email_queues_one_message_per_key(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock, "welcome", category="transactional")
    [contact] = add_contacts(engine, clock, 1)
    with engine.begin() as conn:
        first = send_email(
            conn,
            clock,
            settings,
            template="welcome",
            contact_id=contact,
            key="journey:1:welcome",
            category="transactional",
        )
        again = send_email(
            conn,
            clock,
            settings,
            template="welcome",
            contact_id=contact,
            key="journey:1:welcome",
            category="transactional",
        )
    assert isinstance(first, int)
    assert again is None
    assert [r.payload for r in _outbox(engine)] == [{"message_id": first}]


def test_audience_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Audience.model_validate({"list": "a", "segment": "b"})


# --- REST API ---------------------------------------------------------------------------


def test_create_list_get_and_cancel_a_send_through_the_api(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    add_template(engine, clock)
    [contact] = add_contacts(engine, clock, 1)
    later = (clock.now() + timedelta(days=1)).isoformat()
    created = admin.post(
        "/api/sends",
        json={"template": "news", "audience": {"contact": contact}, "scheduled_at": later},
    )
    assert created.status_code == 201, created.text
    send = created.json()
    assert (send["status"], send["template_version"], send["category"]) == (
        "scheduled",
        1,
        "marketing",
    )

    listed = admin.get("/api/sends").json()
    assert [s["id"] for s in listed["items"]] == [send["id"]]
    assert admin.get(f"/api/sends/{send['id']}").json()["status"] == "scheduled"

    cancelled = admin.post(f"/api/sends/{send['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    again = admin.post(f"/api/sends/{send['id']}/cancel")
    assert again.status_code == 409


def test_send_with_an_unknown_segment_is_refused_naming_it(
    admin: TestClient, engine: Engine, clock: FrozenClock, stored: Any
) -> None:
    add_template(engine, clock)
    before = stored()
    answer = admin.post(
        "/api/sends", json={"template": "news", "audience": {"segment": "nobody-knows"}}
    )
    assert answer.status_code == 422
    assert "nobody-knows" in answer.json()["error"]["message"]
    assert stored() == before


def test_send_of_an_unknown_template_is_not_found(admin: TestClient, stored: Any) -> None:
    before = stored()
    answer = admin.post("/api/sends", json={"template": "nope", "audience": {"contact": 1}})
    assert answer.status_code == 404
    assert stored() == before


def test_send_audience_with_two_kinds_is_invalid(admin: TestClient) -> None:
    answer = admin.post(
        "/api/sends", json={"template": "news", "audience": {"contact": 1, "list": "x"}}
    )
    assert answer.status_code in (400, 422)
    assert "audience" in answer.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/sends"),
        ("post", "/api/sends/1/cancel"),
        ("post", "/api/emails/news/test-send"),
        ("get", "/api/sends"),
        ("get", "/api/sends/1/metrics"),
        ("get", "/api/emails/news/metrics"),
    ],
)
def test_send_endpoints_need_an_admin_key(
    client: TestClient, ingest_key: str, method: str, path: str
) -> None:
    body: dict[str, Any] = {"json": {}} if method == "post" else {}
    assert getattr(client, method)(path, **body).status_code == 401
    client.headers["Authorization"] = f"Bearer {ingest_key}"
    assert getattr(client, method)(path, **body).status_code == 403


def test_list_of_sends_pages_with_a_cursor(
    admin: TestClient, engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    [contact] = add_contacts(engine, clock, 1)
    made = [_new_send(engine, clock, settings, audience={"contact": contact}) for _ in range(3)]
    first = admin.get("/api/sends", params={"limit": 2}).json()
    second = admin.get("/api/sends", params={"limit": 2, "cursor": first["next"]}).json()
    assert [s["id"] for s in first["items"] + second["items"]] == sorted(made, reverse=True)
    assert second["next"] is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(email_sends)).scalar_one() == 3


def test_send_email_to_an_unknown_contact_is_not_found(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    with engine.begin() as conn, pytest.raises(NotFound):
        send_email(
            conn, clock, settings, template="news", contact_id=999, key="x", category="marketing"
        )


def test_cancelling_an_ab_test_skips_the_held_rest(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    add_contacts(engine, clock, 30)
    ab = {"variants": [{"name": "a", "subject": "A"}, {"name": "b", "subject": "B"}]}
    send_id = _new_send(
        engine, clock, settings, audience={"filter": {"field": "email", "op": "is_set"}}, ab=ab
    )
    _run_sends(engine, clock, settings)
    counts = statuses(engine)
    assert counts["held"] > 0
    with engine.begin() as conn:
        assert sends.get_send(conn, send_id).status == "testing"
        sends.cancel_send(conn, clock, send_id)
    assert statuses(engine) == {"skipped": 30}


def test_send_whose_segment_was_archived_fails_and_blocks_nothing(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    add_template(engine, clock)
    ids = add_contacts(engine, clock, 2)
    with engine.begin() as conn:
        create_segment(
            conn,
            clock,
            SegmentIn.model_validate(
                {"slug": "all", "name": "All", "filter": {"field": "email", "op": "is_set"}}
            ),
            settings.zone,
        )
    broken = _new_send(engine, clock, settings, audience={"segment": "all"})
    fine = _new_send(engine, clock, settings, audience={"contact": ids[0]})
    with engine.begin() as conn:
        archive_segment(conn, clock, "all")
    _run_sends(engine, clock, settings)
    with engine.connect() as conn:
        failed = sends.get_send(conn, broken)
        assert sends.get_send(conn, fine).status == "sent"
    assert failed.status == "failed"
    assert failed.error is not None
    assert "all" in failed.error
    assert statuses(engine) == {"queued": 1}
