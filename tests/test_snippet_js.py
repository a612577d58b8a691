"""Serving the browser snippet ``GET /t.js`` (its behaviour in a browser: test_snippet_browser)."""

from __future__ import annotations

import gzip
import json
import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from ekiden.tracking.browser import SNIPPET_PATH, render_snippet
from ekiden.tracking.dwell import MAX_DWELL_MS
from ekiden.tracking.tables import events

CONFIG = re.compile(r"const SERVER = (\{.*?\});")


def test_snippet_is_javascript_with_the_server_settings(client: TestClient) -> None:
    response = client.get("/t.js", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["etag"].startswith('"')
    found = CONFIG.search(response.text)
    assert found is not None
    assert json.loads(found.group(1)) == {"base": "http://testserver", "cookieDays": 395}
    assert "EKIDEN_CONFIG" not in response.text


def test_snippet_revalidates_with_its_etag(client: TestClient) -> None:
    first = client.get("/t.js", headers={"Accept-Encoding": "identity"})
    again = client.get(
        "/t.js", headers={"If-None-Match": first.headers["etag"], "Accept-Encoding": "identity"}
    )
    assert again.status_code == 304
    assert again.content == b""
    other = client.get("/t.js", headers={"If-None-Match": '"stale"', "Accept-Encoding": "identity"})
    assert other.status_code == 200


def test_snippet_is_gzipped_when_the_browser_accepts_it(client: TestClient) -> None:
    plain = client.get("/t.js", headers={"Accept-Encoding": "identity"})
    response = client.get("/t.js", headers={"Accept-Encoding": "gzip, deflate"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.content == plain.content  # the client inflated it
    assert response.headers["etag"] != plain.headers["etag"]
    assert len(gzip.compress(plain.content)) < 6 * 1024  # stays small on the wire


def test_templated_values_cannot_break_out_of_the_script() -> None:
    body = render_snippet("https://ma.example.jp/</script><!--", 30).body.decode()
    config = CONFIG.search(body)
    assert config is not None
    assert "</" not in config.group(1)
    assert "<!--" not in config.group(1)
    assert json.loads(config.group(1))["base"] == "https://ma.example.jp/</script><!--"


def test_raw_snippet_is_our_own_small_es2017_code() -> None:
    source = SNIPPET_PATH.read_text(encoding="utf-8")
    # no syntax newer than ES2017 (optional chaining, nullish coalescing, class fields)
    assert "?." not in re.sub(r"\?\.(?=\d)", "", source)
    assert "??" not in source
    assert "/*EKIDEN_CONFIG*/" in source
    assert len(source.encode()) < 12 * 1024


def _dwell(ingest_key: str, dwell_ms: object, message_id: str) -> bytes:
    message = {
        "type": "track",
        "event": "page_dwell",
        "messageId": message_id,
        "anonymousId": "0b5c7f2e-6f0d-4a8e-9a51-3c1d2b4e5f60",
        "properties": {"dwell_ms": dwell_ms, "page_message_id": "pv-1", "path": "/pricing"},
    }
    return json.dumps({"writeKey": ingest_key, "batch": [message]}).encode()


def test_snippet_dwell_reports_fill_the_dwell_and_path_columns(
    client: TestClient, engine: Engine, ingest_key: str
) -> None:
    # what the snippet's sendBeacon posts: text/plain JSON with the key in the body
    for message_id, dwell_ms in [("d-1", 5250), ("d-2", 10 * 3600 * 1000), ("d-3", "long")]:
        response = client.post(
            "/v1/batch",
            content=_dwell(ingest_key, dwell_ms, message_id),
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )
        assert response.status_code == 200, response.text
    with engine.connect() as conn:
        stored = {
            row.message_id: row
            for row in conn.execute(select(events).where(events.c.type == "page_dwell"))
        }
    assert stored["d-1"].dwell_ms == 5250
    assert stored["d-1"].path == "/pricing"
    assert stored["d-1"].source == "browser"
    assert stored["d-2"].dwell_ms == MAX_DWELL_MS  # a tab left open all night is capped
    assert stored["d-3"].dwell_ms is None  # not a number: kept in properties only
    assert stored["d-3"].properties["dwell_ms"] == "long"
