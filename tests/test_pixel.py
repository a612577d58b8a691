"""The no-JS pixel ``GET /t/p.gif``: always a 1x1 GIF, an event only for a valid ingest key."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from ekiden.clock import FrozenClock
from ekiden.contacts.identity import link_anonymous_id
from ekiden.contacts.service import upsert_contact
from ekiden.tracking.browser import PIXEL, PIXEL_COOKIE
from ekiden.tracking.tables import events

AID = "0b5c7f2e-6f0d-4a8e-9a51-3c1d2b4e5f60"
BROWSER = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)


def stored(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(events).order_by(events.c.id)))


def hit(client: TestClient, **params: str) -> Any:
    response = client.get("/t/p.gif", params=params, headers={"User-Agent": BROWSER})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == PIXEL
    assert "no-store" in response.headers["cache-control"]
    return response


def test_pixel_is_a_one_by_one_transparent_gif(client: TestClient) -> None:
    body = hit(client).content
    assert body.startswith(b"GIF89a")
    assert int.from_bytes(body[6:8], "little") == 1  # width
    assert int.from_bytes(body[8:10], "little") == 1  # height
    assert b"\x21\xf9\x04\x01" in body  # graphic control extension with the transparency flag


def test_valid_pixel_stores_a_page_event(
    client: TestClient, engine: Engine, ingest_key: str, clock: FrozenClock
) -> None:
    url = "https://www.example.co.jp/seminar/2026?utm_source=newsletter&utm_campaign=autumn"
    hit(client, k=ingest_key, aid=AID, u=url, r="https://mail.example.com/")
    [event] = stored(engine)
    assert event.type == "page"
    assert event.source == "pixel"
    assert event.anonymous_id == AID
    assert event.contact_id is None
    assert event.path == "/seminar/2026"
    assert event.properties["url"] == url
    assert event.properties["referrer"] == "https://mail.example.com/"
    assert event.properties["utm_source"] == "newsletter"
    assert event.properties["utm_campaign"] == "autumn"
    assert event.user_agent == BROWSER
    assert event.occurred_at == clock.now()
    assert event.machine is False


def test_pixel_of_a_known_browser_belongs_to_the_contact(
    client: TestClient, engine: Engine, ingest_key: str, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        contact = upsert_contact(conn, clock, email="hanako@example.jp", source_kind="api")
        link_anonymous_id(conn, clock, AID, contact.contact_id)
    hit(client, k=ingest_key, aid=AID, u="https://www.example.co.jp/pricing")
    [event] = stored(engine)
    assert event.contact_id == contact.contact_id


def test_pixel_without_url_uses_the_embedding_page(
    client: TestClient, engine: Engine, ingest_key: str
) -> None:
    client.get(
        "/t/p.gif",
        params={"k": ingest_key, "aid": AID},
        headers={"Referer": "https://www.example.co.jp/catalog", "User-Agent": BROWSER},
    )
    [event] = stored(engine)
    assert event.properties["url"] == "https://www.example.co.jp/catalog"
    assert event.path == "/catalog"


def test_pixel_with_an_event_name_stores_that_event(
    client: TestClient, engine: Engine, ingest_key: str
) -> None:
    hit(client, k=ingest_key, aid=AID, e="signature_viewed", u="https://example.jp/")
    [event] = stored(engine)
    assert event.type == "signature_viewed"
    assert event.source == "pixel"


@pytest.mark.parametrize(
    "name",
    ["page_dwell", "form_submitted", "identify", "email_opened", "task_outcome", "onsite_clicked",
     "stage_changed", "segment_entered"],
)  # fmt: skip
def test_pixel_cannot_fake_system_events(
    client: TestClient, engine: Engine, ingest_key: str, name: str
) -> None:
    hit(client, k=ingest_key, aid=AID, e=name)
    assert stored(engine) == []


def test_unknown_key_stores_nothing_and_answers_the_same(
    client: TestClient, engine: Engine, ingest_key: str
) -> None:
    good = hit(client, k=ingest_key, aid=AID, u="https://example.jp/a")
    bad = hit(client, k="ek_in_not-a-real-key", aid=AID, u="https://example.jp/a")
    assert bad.content == good.content
    assert dict(bad.headers) == dict(good.headers)
    assert len(stored(engine)) == 1


def test_admin_key_in_a_pixel_is_not_honoured(
    client: TestClient, engine: Engine, admin_key: str
) -> None:
    hit(client, k=admin_key, aid=AID)
    assert stored(engine) == []


def test_missing_key_stores_nothing(client: TestClient, engine: Engine) -> None:
    hit(client, aid=AID, u="https://example.jp/")
    hit(client)
    assert stored(engine) == []


def test_oversized_urls_are_truncated(client: TestClient, engine: Engine, ingest_key: str) -> None:
    long_url = "https://example.jp/" + "a" * 3000
    hit(client, k=ingest_key, aid=AID, u=long_url, r=long_url)
    [event] = stored(engine)
    assert event.properties["url"] == long_url[:2048]
    assert event.properties["referrer"] == long_url[:2048]


@pytest.mark.parametrize(
    "params",
    [
        {"aid": "x" * 65},  # oversized anonymous id
        {"aid": "bad id with spaces"},
        {"aid": "short"},
        {"e": "e" * 65},  # oversized event name
        {"e": "<script>"},
        {"k": "k" * 101},  # oversized key
    ],
)
def test_oversized_or_malformed_ids_are_refused(
    client: TestClient, engine: Engine, ingest_key: str, params: dict[str, str]
) -> None:
    hit(client, **{"k": ingest_key, "aid": AID, **params})
    assert stored(engine) == []


def test_huge_query_string_stores_nothing(
    client: TestClient, engine: Engine, ingest_key: str
) -> None:
    hit(client, k=ingest_key, aid=AID, x="y" * 9000)
    assert stored(engine) == []


def test_pixel_without_aid_sets_and_reuses_its_own_cookie(
    client: TestClient, engine: Engine, ingest_key: str
) -> None:
    first = hit(client, k=ingest_key, u="https://example.jp/one")
    cookie = first.cookies.get(PIXEL_COOKIE)
    assert cookie
    assert "httponly" in first.headers["set-cookie"].lower()
    second = hit(client, k=ingest_key, u="https://example.jp/two")
    assert PIXEL_COOKIE not in second.headers.get("set-cookie", "")
    one, two = stored(engine)
    assert one.anonymous_id == two.anonymous_id == cookie


def test_pixel_cookie_is_set_whatever_the_key(client: TestClient) -> None:
    # the same answer for a bad key: the response must not reveal whether a key is valid
    response = hit(client, k="ek_in_unknown")
    assert response.cookies.get(PIXEL_COOKIE)


def test_scanner_pixel_hits_are_flagged_as_machine(
    client: TestClient, engine: Engine, ingest_key: str
) -> None:
    client.get(
        "/t/p.gif",
        params={"k": ingest_key, "aid": AID},
        headers={"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"},
    )
    [event] = stored(engine)
    assert event.machine is True
