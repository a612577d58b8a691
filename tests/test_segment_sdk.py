"""Segment's own Python SDK (segment-analytics-python), unchanged, against a running server."""

from __future__ import annotations

import pytest
from segment.analytics import Client
from segment.analytics.request import APIError
from sqlalchemy import Engine, select
from tests.conftest import LiveServer

from ekiden.contacts.service import find_contact_id, get_contact
from ekiden.tracking.tables import events


def sdk(key: str, server: LiveServer, *, gzip: bool) -> Client:
    # sync_mode posts each call straight away and raises on an error answer
    return Client(write_key=key, host=server.url, sync_mode=True, gzip=gzip, max_retries=0)


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
def test_identify_track_page_arrive_as_one_contact_with_three_events(
    live_server: LiveServer, ingest_key: str, engine: Engine, gzip: bool
) -> None:
    client = sdk(ingest_key, live_server, gzip=gzip)
    client.identify(
        "user-42",
        {"email": "Sato@Example.JP", "firstName": "花子", "lastName": "佐藤", "title": "課長"},
        context={"ip": "198.51.100.7"},
    )
    client.track("user-42", "Downloaded Whitepaper", {"document": "guide-2026"})
    client.page(
        "user-42", "Docs", "Pricing", {"url": "https://www.example.jp/pricing?utm_source=x"}
    )

    with engine.connect() as conn:
        contact_id = find_contact_id(conn, email="Sato@example.jp")
        assert contact_id is not None
        contact = get_contact(conn, contact_id)
        rows = conn.execute(select(events).order_by(events.c.id)).all()
    assert (contact.external_id, contact.last_name, contact.first_name) == (
        "user-42",
        "佐藤",
        "花子",
    )
    assert contact.job_title == "課長"
    # the identify call is part of the history too: identify, track, page
    assert [(r.type, r.contact_id) for r in rows] == [
        ("identify", contact_id),
        ("Downloaded Whitepaper", contact_id),
        ("page", contact_id),
    ]
    assert rows[0].ip == "198.51.100.7"
    assert rows[1].properties == {"document": "guide-2026"}
    assert (rows[2].name, rows[2].path) == ("Pricing", "/pricing")
    assert rows[2].properties["category"] == "Docs"
    assert rows[2].properties["utm_source"] == "x"
    assert all(r.message_id and r.source == "api" for r in rows)
    assert rows[0].context["library"]["name"] == "analytics-python"


def test_sdk_with_an_unknown_key_gets_401_and_nothing_is_stored(
    live_server: LiveServer, engine: Engine
) -> None:
    client = sdk("ek_in_wrong", live_server, gzip=False)
    with pytest.raises(APIError) as refused:
        client.track("user-1", "Signed Up")
    assert refused.value.status == 401
    with engine.connect() as conn:
        assert conn.execute(select(events.c.id)).first() is None
