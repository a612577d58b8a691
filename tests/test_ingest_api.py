"""The Segment-compatible HTTP Tracking API: /v1/identify|track|page|screen|group|alias|batch."""

from __future__ import annotations

import base64
import gzip
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from tests.conftest import LiveServer

from ekiden.bench.workload import generate_messages
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.customfields import CustomFieldDefinition, define_field
from ekiden.contacts.models import Contact, ContactChanges
from ekiden.contacts.service import find_contact_id, get_contact, upsert_contact
from ekiden.contacts.tables import accounts, contacts, identities
from ekiden.db.schema import metadata
from ekiden.segments.tables import dirty_contacts
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.identify import Call, IdentityResolver
from ekiden.tracking.ingest import ingest_messages
from ekiden.tracking.segment import SegmentMessage
from ekiden.tracking.tables import events

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def all_events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(events).order_by(events.c.id)))


def contact_by(engine: Engine, *, email: str | None = None, user_id: str | None = None) -> Contact:
    with engine.connect() as conn:
        contact_id = find_contact_id(conn, email=email, external_id=user_id)
        assert contact_id is not None
        return get_contact(conn, contact_id)


@pytest.fixture
def api(client: TestClient, ingest_key: str) -> TestClient:
    client.headers.update(basic(ingest_key))
    return client


# --- authentication -------------------------------------------------------------------------


def test_missing_key_is_refused_and_nothing_stored(client: TestClient, engine: Engine) -> None:
    answer = client.post("/v1/track", json={"userId": "u1", "event": "Signed Up"})
    assert answer.status_code == 401
    assert "write key is required" in answer.json()["error"]["message"]
    assert count(engine, events) == 0


def test_unknown_key_is_refused(client: TestClient, engine: Engine) -> None:
    answer = client.post(
        "/v1/track", json={"userId": "u1", "event": "Signed Up"}, headers=basic("ek_in_nope")
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    body = {"writeKey": "ek_in_nope", "batch": [{"type": "track", "userId": "u", "event": "E"}]}
    assert client.post("/v1/batch", json=body).status_code == 401
    assert count(engine, events) == 0


def test_admin_key_may_write_too(client: TestClient, admin_key: str, engine: Engine) -> None:
    answer = client.post("/v1/track", json={"userId": "u1", "event": "E"}, headers=basic(admin_key))
    assert answer.status_code == 200
    assert answer.json() == {"success": True}
    assert count(engine, events) == 1


def test_beacon_style_text_plain_with_write_key_in_body(
    client: TestClient, ingest_key: str, engine: Engine
) -> None:
    body = {
        "writeKey": ingest_key,
        "batch": [{"type": "page", "anonymousId": "anon-1", "properties": {"path": "/a"}}],
    }
    answer = client.post(
        "/v1/batch",
        content=orjson.dumps(body),
        headers={"Content-Type": "text/plain;charset=UTF-8", "User-Agent": DESKTOP},
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    (event,) = all_events(engine)
    # a beacon comes from the visitor's browser: its agent and address are the visitor's
    assert (event.source, event.user_agent, event.ip, event.path) == (
        "browser",
        DESKTOP,
        "testclient",
        "/a",
    )


def test_cors_preflight_and_headers_on_errors(client: TestClient) -> None:
    answer = client.options(
        "/v1/batch",
        headers={"Origin": "https://www.example.jp", "Access-Control-Request-Method": "POST"},
    )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "POST" in answer.headers["access-control-allow-methods"]
    refused = client.post("/v1/batch", content=b"{}", headers={"Content-Type": "text/plain"})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"


def test_unsupported_content_type_is_refused(api: TestClient, engine: Engine) -> None:
    answer = api.post(
        "/v1/track", content=b"userId=u1", headers={"Content-Type": "application/x-www-form"}
    )
    assert answer.status_code == 415
    assert count(engine, events) == 0


# --- malformed and oversized input ------------------------------------------------------------


def test_malformed_json_is_400_and_nothing_stored(api: TestClient, engine: Engine) -> None:
    answer = api.post("/v1/batch", content=b'{"batch": [', headers={"Content-Type": "text/plain"})
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["error"]["message"]
    assert api.post("/v1/batch", json=[1, 2]).status_code == 400
    assert api.post("/v1/batch", json={"batch": "nope"}).status_code == 422
    assert count(engine, events) == 0


def test_event_without_any_id_rejects_the_whole_batch(api: TestClient, engine: Engine) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "Fine"},
        {"type": "page", "anonymousId": "a1"},
        {"type": "track", "event": "Nobody"},
    ]
    answer = api.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["message"].startswith("event 2 (track)")
    assert error["details"] == {"index": 2}
    assert count(engine, events) == 0
    assert count(engine, contacts) == 0


def test_unknown_message_type_names_the_index(api: TestClient, engine: Engine) -> None:
    batch = [{"type": "track", "userId": "u", "event": "E"}, {"type": "purchase", "userId": "u"}]
    answer = api.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("event 1: type")
    assert count(engine, events) == 0


def test_event_over_32_kb_in_a_batch_is_413_naming_the_event(
    api: TestClient, engine: Engine
) -> None:
    big = {"type": "track", "userId": "u1", "event": "Big", "properties": {"x": "y" * 33_000}}
    answer = api.post("/v1/batch", json={"batch": [{"type": "page", "userId": "u1"}, big]})
    assert answer.status_code == 413
    message = answer.json()["error"]["message"]
    assert "event 1" in message
    assert "per-event limit" in message
    assert count(engine, events) == 0


def test_single_call_over_32_kb_is_413(api: TestClient, engine: Engine) -> None:
    answer = api.post("/v1/track", json={"userId": "u", "event": "E", "x": "y" * 33_000})
    assert answer.status_code == 413
    assert "32 KB per-event limit" in answer.json()["error"]["message"]
    assert count(engine, events) == 0


def test_batch_over_500_kb_is_413(api: TestClient, engine: Engine) -> None:
    item = {"type": "track", "userId": "u1", "event": "E", "properties": {"x": "y" * 20_000}}
    answer = api.post("/v1/batch", json={"batch": [item] * 30})
    assert answer.status_code == 413
    assert "500 KB batch limit" in answer.json()["error"]["message"]
    assert count(engine, events) == 0


def test_streamed_body_without_length_is_cut_at_the_limit(api: TestClient, engine: Engine) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"batch": ['
        for _ in range(100):
            yield b'{"type": "track", "userId": "u", "event": "E", "p": "' + b"z" * 10_000 + b'"},'
        yield b"{}]}"

    answer = api.post("/v1/batch", content=chunks())
    assert answer.status_code == 413
    assert count(engine, events) == 0


def test_gzip_body_is_accepted(api: TestClient, engine: Engine) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "Z"}]}))
    answer = api.post(
        "/v1/batch",
        content=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    assert [e.type for e in all_events(engine)] == ["Z"]


def test_gzip_limits_apply_to_the_decompressed_size(api: TestClient, engine: Engine) -> None:
    item = {"type": "track", "userId": "u", "event": "E", "properties": {"x": "a" * 30_000}}
    body = gzip.compress(orjson.dumps({"batch": [item] * 20}))
    assert len(body) < 10_000  # small on the wire, 600 KB inflated
    answer = api.post("/v1/batch", content=body, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 413
    assert "batch limit" in answer.json()["error"]["message"]
    broken = api.post("/v1/batch", content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert broken.status_code == 400
    assert count(engine, events) == 0


# --- identify and traits -------------------------------------------------------------------------


def test_invalid_email_is_422_and_the_contact_is_unchanged(api: TestClient, engine: Engine) -> None:
    first = {"userId": "u1", "traits": {"email": "hanako@example.jp", "firstName": "Hanako"}}
    assert api.post("/v1/identify", json=first).status_code == 200
    batch = [
        {"type": "track", "userId": "u1", "event": "Viewed"},
        {"type": "identify", "userId": "u1", "traits": {"email": "not an email", "firstName": "X"}},
    ]
    answer = api.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_email"
    assert answer.json()["error"]["message"].startswith("event 1:")
    contact = contact_by(engine, user_id="u1")
    assert (contact.email, contact.first_name) == ("hanako@example.jp", "Hanako")
    assert count(engine, events) == 1


def test_standard_traits_map_to_contact_fields(api: TestClient, engine: Engine) -> None:
    traits = {
        "email": " Taro@Example.JP ",
        "firstName": "太郎",
        "lastName": "山田",
        "last_name_kana": "ヤマダ",
        "first_name_kana": "タロウ",
        "phone": "03-1234-5678",
        "company": {"name": "山田商事"},
        "title": "部長",
        "industry": "製造",
        "department": "営業部",
        "country": "jp",
        "timezone": "Asia/Tokyo",
    }
    assert api.post("/v1/identify", json={"userId": "u-7", "traits": traits}).status_code == 200
    contact = contact_by(engine, email="Taro@example.jp")
    assert contact.external_id == "u-7"
    assert contact.source_kind == "ingest"
    assert (contact.last_name, contact.first_name) == ("山田", "太郎")
    assert (contact.last_name_kana, contact.first_name_kana) == ("ヤマダ", "タロウ")
    assert (contact.company, contact.job_title, contact.department) == (
        "山田商事",
        "部長",
        "営業部",
    )
    assert (contact.industry, contact.phone) == ("製造", "03-1234-5678")
    assert (contact.country, contact.time_zone) == ("JP", "Asia/Tokyo")


def test_unknown_traits_stay_in_the_event_and_defined_ones_become_custom(
    api: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        define_field(conn, clock, CustomFieldDefinition(key="budget", label="予算", type="integer"))
    traits = {"email": "a@example.jp", "budget": "1,200", "favourite": "green", "country": "Japan"}
    assert api.post("/v1/identify", json={"userId": "u1", "traits": traits}).status_code == 200
    contact = contact_by(engine, user_id="u1")
    assert contact.custom == {"budget": 1200}
    assert contact.country is None  # not an ISO code: kept in the event only
    (event,) = all_events(engine)
    assert event.type == "identify"
    assert event.properties["favourite"] == "green"
    assert event.properties["country"] == "Japan"


def test_bad_value_for_a_defined_custom_field_is_422(
    api: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        define_field(conn, clock, CustomFieldDefinition(key="budget", label="予算", type="integer"))
    answer = api.post("/v1/identify", json={"userId": "u1", "traits": {"budget": "lots"}})
    assert answer.status_code == 422
    assert "traits.budget" in answer.json()["error"]["message"]
    assert count(engine, contacts) == 0
    assert count(engine, events) == 0


def test_identify_joins_the_anonymous_history_and_records_the_device(
    api: TestClient, engine: Engine
) -> None:
    page = {"anonymousId": "browser-1", "context": {"userAgent": IPHONE}, "name": "Top"}
    assert api.post("/v1/page", json={**page, "properties": {"path": "/"}}).status_code == 200
    assert (
        api.post("/v1/page", json={**page, "properties": {"path": "/pricing"}}).status_code == 200
    )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar_one() == 0
    answer = api.post(
        "/v1/identify", json={"anonymousId": "browser-1", "traits": {"email": "k@example.jp"}}
    )
    assert answer.status_code == 200
    contact = contact_by(engine, email="k@example.jp")
    assert {e.contact_id for e in all_events(engine)} == {contact.id}
    with engine.connect() as conn:
        device = conn.execute(
            select(identities.c.device).where(identities.c.value == "browser-1")
        ).scalar_one()
    assert device == "mobile"
    # later events of that browser are the contact's straight away
    assert api.post("/v1/track", json={"anonymousId": "browser-1", "event": "Clicked"}).is_success
    assert all_events(engine)[-1].contact_id == contact.id


def test_anonymous_page_earlier_in_the_same_batch_joins_the_contact(
    api: TestClient, engine: Engine
) -> None:
    batch = [
        {"type": "page", "anonymousId": "b2", "properties": {"path": "/whitepaper"}},
        {"type": "identify", "anonymousId": "b2", "userId": "u9"},
    ]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    contact = contact_by(engine, user_id="u9")
    assert [e.contact_id for e in all_events(engine)] == [contact.id, contact.id]


def test_anonymous_visitors_do_not_become_contacts(api: TestClient, engine: Engine) -> None:
    batch = [{"type": "page", "anonymousId": f"a{i}"} for i in range(5)]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    assert count(engine, events) == 5
    assert count(engine, contacts) == 0


# --- page details, time, ip ---------------------------------------------------------------


def test_page_keeps_url_details_and_utm(api: TestClient, engine: Engine) -> None:
    message = {
        "anonymousId": "a1",
        "name": "Pricing",
        "context": {
            "page": {
                "url": "https://www.example.jp/pricing?utm_source=news&utm_medium=email",
                "referrer": "https://www.google.com/",
                "title": "料金",
                "search": "?utm_source=news&utm_medium=email",
            },
            "campaign": {"name": "autumn", "source": "newsletter"},
        },
    }
    assert api.post("/v1/page", json=message).status_code == 200
    (event,) = all_events(engine)
    assert (event.type, event.name, event.path) == ("page", "Pricing", "/pricing")
    props = event.properties
    assert props["referrer"] == "https://www.google.com/"
    assert props["title"] == "料金"
    # the campaign context wins over the URL's query; missing keys come from the URL
    assert props["utm_source"] == "newsletter"
    assert props["utm_campaign"] == "autumn"
    assert props["utm_medium"] == "email"


def test_clock_skew_is_corrected_like_segment(
    api: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    now = clock.now()
    device_clock = now + timedelta(hours=3)  # the phone's clock is 3 hours fast
    message = {
        "userId": "u1",
        "event": "Opened App",
        "originalTimestamp": (device_clock - timedelta(minutes=10)).isoformat(),
        "sentAt": device_clock.isoformat(),
    }
    assert api.post("/v1/track", json=message).status_code == 200
    explicit = {"userId": "u1", "event": "Imported", "timestamp": "2025-04-01T09:00:00+09:00"}
    assert api.post("/v1/track", json=explicit).status_code == 200
    first, second = all_events(engine)
    assert first.occurred_at == now - timedelta(minutes=10)
    assert second.occurred_at == datetime(2025, 4, 1, 0, 0, tzinfo=UTC)


def test_ip_comes_from_context_else_the_request(api: TestClient, engine: Engine) -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "A", "context": {"ip": "203.0.113.9"}},
        {"type": "track", "userId": "u", "event": "B"},
    ]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    assert [e.ip for e in all_events(engine)] == ["203.0.113.9", "testclient"]


# --- dedup, alias, group, machines, last seen -----------------------------------------------


def test_repeated_message_id_is_stored_once_and_traits_not_reapplied(
    api: TestClient, engine: Engine
) -> None:
    message = {"messageId": "m-1", "userId": "u1", "traits": {"firstName": "Ichiro"}}
    assert api.post("/v1/identify", json=message).status_code == 200
    replay = {**message, "traits": {"firstName": "Changed"}}
    duplicate_in_batch = {"type": "track", "messageId": "m-2", "userId": "u1", "event": "E"}
    batch = [{**replay, "type": "identify"}, duplicate_in_batch, duplicate_in_batch]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    assert contact_by(engine, user_id="u1").first_name == "Ichiro"
    assert [e.message_id for e in all_events(engine)] == ["m-1", "m-2"]


def test_alias_links_the_previous_id_to_the_user(api: TestClient, engine: Engine) -> None:
    assert api.post("/v1/page", json={"anonymousId": "anon-9", "name": "Top"}).status_code == 200
    assert api.post("/v1/alias", json={"previousId": "anon-9", "userId": "user-9"}).is_success
    contact = contact_by(engine, user_id="user-9")
    assert [e.contact_id for e in all_events(engine)] == [contact.id, contact.id]
    assert all_events(engine)[1].properties == {"previousId": "anon-9"}
    # the previous id now also resolves as a user id
    assert api.post("/v1/track", json={"userId": "anon-9", "event": "E"}).is_success
    assert all_events(engine)[-1].contact_id == contact.id
    assert count(engine, contacts) == 1


def test_alias_needs_both_ids(api: TestClient, engine: Engine) -> None:
    answer = api.post("/v1/alias", json={"userId": "u1"})
    assert answer.status_code == 422
    assert "previousId" in answer.json()["error"]["message"]
    assert count(engine, events) == 0


def test_group_creates_the_account_and_sets_the_contact(api: TestClient, engine: Engine) -> None:
    traits = {"name": "株式会社サンプル", "website": "https://www.sample.co.jp/", "employees": 250}
    traits["industry"] = "SaaS"
    assert api.post(
        "/v1/group", json={"userId": "u1", "groupId": "g-1", "traits": traits}
    ).is_success
    assert api.post("/v1/group", json={"userId": "u2", "groupId": "g-1"}).is_success
    with engine.connect() as conn:
        (account,) = conn.execute(select(accounts)).all()
    assert (account.name, account.domain, account.industry, account.employees) == (
        "株式会社サンプル",
        "sample.co.jp",
        "SaaS",
        250,
    )
    assert contact_by(engine, user_id="u1").account_id == account.id
    assert contact_by(engine, user_id="u2").account_id == account.id
    assert [e.type for e in all_events(engine)] == ["group", "group"]


def test_machine_user_agents_are_flagged_and_do_not_count_as_seen(
    api: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    assert api.post("/v1/identify", json={"userId": "u1"}).is_success
    clock.advance(timedelta(hours=1))
    scanner = "Mozilla/5.0 (compatible; Barracuda Sentinel)"
    batch = [
        {"type": "page", "userId": "u1", "context": {"userAgent": scanner}},
        {"type": "page", "userId": "u1", "context": {"userAgent": "Googlebot/2.1"}},
    ]
    assert api.post("/v1/batch", json={"batch": batch}).is_success
    flagged = all_events(engine)[1:]
    assert [e.machine for e in flagged] == [True, True]
    assert flagged[0].machine_reason == "mail security scanner (Barracuda)"
    assert "Googlebot" in flagged[1].machine_reason
    assert contact_by(engine, user_id="u1").last_seen_at is None
    person = {"type": "page", "userId": "u1", "context": {"userAgent": DESKTOP}}
    assert api.post("/v1/batch", json={"batch": [person]}).is_success
    assert all_events(engine)[-1].machine is False
    assert contact_by(engine, user_id="u1").last_seen_at == clock.now()


def test_every_endpoint_answers_like_segment(api: TestClient, engine: Engine) -> None:
    calls = {
        "identify": {"userId": "u1", "traits": {"email": "e@example.jp"}},
        "track": {"userId": "u1", "event": "Signed Up"},
        "page": {"userId": "u1", "name": "Home"},
        "screen": {"userId": "u1", "name": "Settings"},
        "group": {"userId": "u1", "groupId": "acme"},
        "alias": {"previousId": "old-id", "userId": "u1"},
    }
    for kind, body in calls.items():
        answer = api.post(f"/v1/{kind}", json=body)
        assert answer.status_code == 200, (kind, answer.text)
        assert answer.json() == {"success": True}
    kinds = [e.type for e in all_events(engine)]
    assert kinds == ["identify", "Signed Up", "page", "screen", "group", "alias"]
    assert len({e.contact_id for e in all_events(engine)}) == 1


def test_concurrent_batches_about_the_same_people_all_succeed(
    live_server: LiveServer, ingest_key: str, engine: Engine
) -> None:
    """Batches that create and link the same contacts in different orders, posted at once:
    none may fail (PostgreSQL would otherwise deadlock) and every event is stored once."""

    def batch(offset: int) -> list[dict[str, Any]]:
        people = [(offset + n) % 12 for n in range(12)]
        return [
            {
                "type": "identify",
                "userId": f"u{p}",
                "anonymousId": f"a{p}",
                "messageId": f"m{offset}-{p}",
                "traits": {"email": f"p{p}@example.jp"},
            }
            for p in people
        ]

    answers: list[int] = []

    def post(offset: int) -> None:
        with httpx.Client(base_url=live_server.url, auth=(ingest_key, "")) as http:
            answers.append(http.post("/v1/batch", json={"batch": batch(offset)}).status_code)

    threads = [threading.Thread(target=post, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 8
    assert count(engine, events) == 8 * 12
    assert count(engine, contacts) == 12


# --- new people of a batch created together ---------------------------------------------------


def test_a_new_person_identified_twice_in_one_batch_is_one_contact_with_the_later_traits(
    api: TestClient, engine: Engine
) -> None:
    batch = [
        {"type": "identify", "userId": "u1", "anonymousId": "b1", "traits": {"firstName": "A"}},
        {"type": "track", "userId": "u1", "anonymousId": "b1", "event": "Viewed"},
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "b1",
            "traits": {"email": "u1@example.jp", "firstName": "B"},
        },
    ]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    assert count(engine, contacts) == 1
    contact = contact_by(engine, user_id="u1")
    assert (contact.email, contact.first_name) == ("u1@example.jp", "B")
    assert {e.contact_id for e in all_events(engine)} == {contact.id}


def test_a_repeated_message_id_inside_a_batch_creates_the_person_once(
    api: TestClient, engine: Engine
) -> None:
    first = {"type": "identify", "messageId": "m1", "userId": "u1", "traits": {"firstName": "A"}}
    repeat = {**first, "traits": {"firstName": "Changed"}}
    assert api.post("/v1/batch", json={"batch": [first, repeat]}).status_code == 200
    assert count(engine, contacts) == 1
    assert contact_by(engine, user_id="u1").first_name == "A"
    assert [e.message_id for e in all_events(engine)] == ["m1"]


def test_two_new_user_ids_with_one_email_in_a_batch_are_one_contact(
    api: TestClient, engine: Engine
) -> None:
    batch = [
        {"type": "identify", "userId": "u1", "anonymousId": "b1", "traits": {"email": "x@ex.jp"}},
        {"type": "identify", "userId": "u2", "anonymousId": "b2", "traits": {"email": "x@EX.jp"}},
    ]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    assert count(engine, contacts) == 1
    contact = contact_by(engine, email="x@ex.jp")
    assert contact.external_id == "u1"  # the second user id does not replace the first
    assert {e.contact_id for e in all_events(engine)} == {contact.id}


def test_a_known_email_with_a_new_user_id_updates_that_contact(
    api: TestClient, engine: Engine
) -> None:
    known = {"anonymousId": "b0", "traits": {"email": "k@example.jp", "firstName": "K"}}
    assert api.post("/v1/identify", json=known).status_code == 200
    batch = [
        {"type": "identify", "userId": "u-new", "traits": {"email": "k@example.jp"}},
        {"type": "identify", "userId": "u-other", "traits": {"email": "o@example.jp"}},
    ]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    assert count(engine, contacts) == 2
    contact = contact_by(engine, email="k@example.jp")
    assert (contact.external_id, contact.first_name) == ("u-new", "K")
    assert contact_by(engine, user_id="u-other").email == "o@example.jp"


def test_a_track_with_a_new_user_id_creates_the_contact_and_links_the_browser(
    api: TestClient, engine: Engine
) -> None:
    assert api.post("/v1/page", json={"anonymousId": "b5", "name": "Top"}).status_code == 200
    batch = [
        {"type": "track", "userId": "u5", "anonymousId": "b5", "event": "Signed Up"},
        {"type": "page", "anonymousId": "b5", "name": "Pricing"},
    ]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    contact = contact_by(engine, user_id="u5")
    assert contact.source_kind == "ingest"
    assert [e.contact_id for e in all_events(engine)] == [contact.id] * 3
    with engine.connect() as conn:
        linked = conn.execute(
            select(identities.c.contact_id).where(identities.c.value == "b5")
        ).scalar_one()
    assert linked == contact.id


def test_new_contacts_are_queued_for_a_segment_refresh(api: TestClient, engine: Engine) -> None:
    batch = [
        {"type": "identify", "userId": f"u{n}", "traits": {"email": f"p{n}@example.jp"}}
        for n in range(3)
    ]
    assert api.post("/v1/batch", json={"batch": batch}).status_code == 200
    with engine.connect() as conn:
        queued = set(conn.execute(select(dirty_contacts.c.contact_id)).scalars())
        created = set(conn.execute(select(contacts.c.id)).scalars())
    assert len(created) == 3
    assert queued == created


def test_a_person_created_meanwhile_by_another_writer_is_updated_not_duplicated(
    engine: Engine, clock: FrozenClock
) -> None:
    """The bulk step's rows collide with a contact committed after the batch's look-ups: the
    step leaves nothing behind and the one-by-one path updates that contact."""

    raw = {"type": "identify", "userId": "u1", "anonymousId": "b1"}
    message = SegmentMessage.model_validate(raw)
    changes = ContactChanges(first_name="太郎")
    with engine.begin() as conn:
        resolver = IdentityResolver(conn, clock, [message], ["t@example.jp"])
        other = upsert_contact(conn, clock, email="t@example.jp", source_kind="form")
        call = Call(message, "t@example.jp", changes, None)
        assert resolver.create_new_people([call], {}) == 0
        contact_id = resolver.apply(message, "t@example.jp", changes, None, position=0)
    assert contact_id == other.contact_id
    assert count(engine, contacts) == 1
    contact = contact_by(engine, email="t@example.jp")
    assert (contact.external_id, contact.first_name) == ("u1", "太郎")


def _outcome(engine: Engine) -> dict[str, Any]:
    """What ingestion left behind, with contact ids replaced by the contact's user id /
    email so that two databases can be compared."""
    with engine.connect() as conn:
        people = {
            row.id: (row.external_id, row.email)
            for row in conn.execute(select(contacts.c.id, contacts.c.external_id, contacts.c.email))
        }
        rows = conn.execute(
            select(contacts).order_by(contacts.c.external_id, contacts.c.email)
        ).mappings()
        contact_rows = sorted(
            ({k: v for k, v in r.items() if k not in ("id", "merged_into_id")} for r in rows),
            key=repr,
        )
        links = sorted(
            (r.kind, r.value, people[r.contact_id], r.device)
            for r in conn.execute(select(identities))
        )
        history = [
            (r.message_id, people.get(r.contact_id), r.type, r.occurred_at)
            for r in conn.execute(select(events).order_by(events.c.message_id))
        ]
        queued = sorted(
            people[i] for i in conn.execute(select(dirty_contacts.c.contact_id)).scalars()
        )
    return {"contacts": contact_rows, "identities": links, "events": history, "queued": queued}


def test_creating_new_people_together_stores_what_one_by_one_stores(
    engine: Engine, clock: FrozenClock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generated site's traffic (new people, repeat visitors, batches arriving out of
    order) leaves the same contacts, identities, events and refresh queue either way."""

    messages = generate_messages(600, seed=11)
    batches = [messages[i : i + 40] for i in range(0, len(messages), 40)]
    random.Random(3).shuffle(batches)  # later visits may arrive before the identify

    def run() -> dict[str, Any]:
        for batch in batches:
            with engine.begin() as conn:
                ingest_messages(conn, clock, settings, batch, request_ip="203.0.113.9")
        return _outcome(engine)

    together = run()
    created = len(together["contacts"])
    assert created > 20
    _clear(engine)
    monkeypatch.setattr(IdentityResolver, "create_new_people", lambda *_: 0)
    one_by_one = run()
    assert one_by_one == together


def _clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


def test_concurrent_batches_creating_the_same_new_person_create_it_once(
    live_server: LiveServer, ingest_key: str, engine: Engine
) -> None:
    """Every batch names the same new people from its own browser, so each one qualifies
    for creating them together; only one may."""

    def batch(offset: int) -> list[dict[str, Any]]:
        return [
            {
                "type": "identify" if p % 2 else "track",
                "event": "Signed Up",
                "userId": f"u{p}",
                "anonymousId": f"browser-{offset}-{p}",
                "messageId": f"m{offset}-{p}",
                "traits": {"email": f"p{p}@example.jp"} if p % 2 else {},
            }
            for p in range(6)
        ]

    answers: list[int] = []

    def post(offset: int) -> None:
        with httpx.Client(base_url=live_server.url, auth=(ingest_key, "")) as http:
            answers.append(http.post("/v1/batch", json={"batch": batch(offset)}).status_code)

    threads = [threading.Thread(target=post, args=(offset,)) for offset in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * 6
    assert count(engine, events) == 6 * 6
    assert count(engine, contacts) == 6
    with engine.connect() as conn:
        browsers = conn.execute(
            select(func.count()).select_from(identities).where(identities.c.kind == "anonymous_id")
        ).scalar_one()
    assert browsers == 6 * 6
    for p in range(1, 6, 2):
        assert contact_by(engine, user_id=f"u{p}").email == f"p{p}@example.jp"


def test_recorded_events_read_back_exactly_and_repeats_are_skipped(
    engine: Engine, clock: FrozenClock
) -> None:
    moment = datetime(2026, 11, 24, 18, 30, 15, 123456, tzinfo=UTC)
    full = NewEvent(
        type="page", occurred_at=moment, source="api", anonymous_id="b1", name="料金",
        path="/pricing", dwell_ms=1200, properties={"title": "料金プラン", "n": 1.5, "ok": True},
        context={"locale": "ja-JP", "list": [1, None]}, ip="203.0.113.1", user_agent="UA",
        machine=True, machine_reason="crawler", message_id="m1",
    )  # fmt: skip
    bare = NewEvent(type="Signed Up", occurred_at=moment, source="system")
    with engine.begin() as conn:
        record_events(conn, clock, [full, bare])
    with engine.begin() as conn:
        record_events(conn, clock, [NewEvent(type="x", occurred_at=moment, source="api",
                                             message_id="m1")])  # fmt: skip
    first, second = all_events(engine)
    assert (first.type, first.name, first.anonymous_id, first.path, first.dwell_ms) == (
        "page", "料金", "b1", "/pricing", 1200,
    )  # fmt: skip
    assert first.occurred_at == moment
    assert first.received_at == clock.now()
    assert first.properties == {"title": "料金プラン", "n": 1.5, "ok": True}
    assert first.context == {"locale": "ja-JP", "list": [1, None]}
    assert (first.ip, first.user_agent, first.machine, first.machine_reason) == (
        "203.0.113.1", "UA", True, "crawler",
    )  # fmt: skip
    assert (first.message_id, first.source, first.contact_id) == ("m1", "api", None)
    assert (second.type, second.machine, second.properties, second.message_id) == (
        "Signed Up", False, {}, None,
    )  # fmt: skip


def _advisory_locks(conn: Any) -> list[tuple[str, bool]]:
    rows = conn.execute(
        text(
            "SELECT mode, granted FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        )
    )
    return sorted((row.mode, row.granted) for row in rows)


def test_on_postgresql_a_batch_locks_only_the_identities_it_may_write(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("advisory locks are PostgreSQL's; SQLite runs one writer at a time")
    known = [{"type": "identify", "userId": "u1", "anonymousId": "b1"}]
    with engine.begin() as conn:
        ingest_messages(conn, clock, settings, known, request_ip=None)
    visits = [
        {"type": "page", "userId": "u1", "anonymousId": "b1", "name": "Top"},
        {"type": "page", "anonymousId": "b9", "name": "Top"},
    ]
    with engine.begin() as conn:
        ingest_messages(conn, clock, settings, visits, request_ip=None)
        # known person, linked browser: only reads, so the two browsers are locked shared
        assert _advisory_locks(conn) == [("ShareLock", True)] * 3
    new_browser = [{"type": "track", "userId": "u1", "anonymousId": "b2", "event": "E"}]
    with engine.begin() as conn:
        ingest_messages(conn, clock, settings, new_browser, request_ip=None)
        locks = _advisory_locks(conn)
    assert locks == [("ExclusiveLock", True), ("ExclusiveLock", True), ("ShareLock", True)]
    many = [{"type": "identify", "userId": f"m{n}", "anonymousId": f"c{n}"} for n in range(200)]
    with engine.begin() as conn:
        ingest_messages(conn, clock, settings, many, request_ip=None)
        assert _advisory_locks(conn) == [("ExclusiveLock", True)]  # the whole-ingest lock
    assert count(engine, contacts) == 201


def test_on_postgresql_a_page_view_racing_the_identify_of_its_browser_joins_the_contact(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    """An identify that links a browser and a page view from that browser, in flight at the
    same time: the page view waits for the identify (or the identify for it), so it is stored
    as the contact's or attributed to them — never left anonymous."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    identify = [{"type": "identify", "userId": "u1", "anonymousId": "b1",
                 "traits": {"email": "race@example.jp"}}]  # fmt: skip
    visit = [{"type": "page", "anonymousId": "b1", "name": "Thanks", "messageId": "v1"}]
    done = threading.Event()

    def view() -> None:
        with engine.begin() as conn:
            ingest_messages(conn, clock, settings, visit, request_ip=None)
        done.set()

    with engine.connect() as first:
        with first.begin():
            ingest_messages(first, clock, settings, identify, request_ip=None)
            thread = threading.Thread(target=view)
            thread.start()
            # the page view cannot read the browser's owner while the identify is undecided
            assert not done.wait(0.5)
        thread.join(timeout=10)
    assert done.is_set()
    [page] = [e for e in all_events(engine) if e.type == "page"]
    assert page.contact_id == contact_by(engine, user_id="u1").id
