"""Forms in a real browser: headless Chromium renders the embed on a customer's website (another
origin), submits it, and uses the hosted page; the database is checked afterwards.

Needs Debian's /usr/bin/chromium; skipped without it unless EKIDEN_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine, select
from tests.conftest import LiveServer
from tests.test_forms import download_form

import test_snippet_browser
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tables import consents, contacts
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events
from ekiden.web.app import create_app
from ekiden.web.deps import AppContext

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
pytestmark = pytest.mark.browser


# one Chromium per module, launched as the snippet tests do (same flags, shop.test mapped)
browser = test_snippet_browser.browser


@pytest.fixture
def ekiden(settings: Settings, engine: Engine, clock: FrozenClock) -> Iterator[LiveServer]:
    """A live server whose public URL (used in the embed) is its real address."""
    app = create_app(settings, engine=engine, clock=clock)
    server = LiveServer(app)
    public = settings.model_copy(update={"base_url": server.url})
    app.state.ctx = AppContext(settings=public, engine=engine, clock=clock)
    with server:
        yield server


@pytest.fixture
def customer_site(ekiden: LiveServer) -> Iterator[str]:
    """The customer's page on another origin, embedding the form and carrying the cookie."""
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Whitepaper</title>"
        "<script>document.cookie = 'ekiden_aid=anon-browser-1; path=/';</script></head><body>"
        '<h1>Download</h1><div data-ekiden-form="whitepaper"></div>'
        f'<script src="{ekiden.url}/f/whitepaper.js" async></script></body></html>'
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://shop.test:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def form(ekiden: LiveServer, admin_key: str) -> None:
    import httpx

    definition = download_form(fields=download_form()["fields"][:3] + download_form()["fields"][4:])
    response = httpx.post(
        f"{ekiden.url}/api/forms",
        json=definition,
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert response.status_code == 201, response.text


def test_embedded_form_submits_from_another_origin(
    browser: Any, customer_site: str, form: None, engine: Engine, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        record_events(
            conn,
            clock,
            [
                NewEvent(
                    type="page",
                    occurred_at=clock.now(),
                    source="browser",
                    anonymous_id="anon-browser-1",
                    path="/",
                    message_id="pv-browser-1",
                )
            ],
        )
    page = browser.new_page(user_agent=USER_AGENT, locale="ja-JP")
    page.goto(f"{customer_site}/wp?utm_source=partner&utm_campaign=wp2026")
    page.wait_for_selector("form.ekiden-form")
    assert page.get_by_label("メールアドレス").is_visible()
    page.locator("button[type=submit]").click()  # empty: errors shown inline, nothing stored
    page.wait_for_selector(".ek-error")
    assert "この項目は必須です。" in page.inner_text("form.ekiden-form")
    clock.advance(timedelta(seconds=30))
    page.get_by_label("メールアドレス").fill("browser@example.jp")
    page.locator("input[name=last_name]").fill("鈴木")
    page.get_by_label("MA").check()
    page.locator("input[name=consent]").check()
    page.locator("button[type=submit]").click()
    page.wait_for_selector("text=ありがとうございます")
    assert page.get_by_role("link", name="資料をダウンロードする").get_attribute("href") == (
        "https://cdn.example.jp/wp.pdf"
    )
    page.close()
    with engine.connect() as conn:
        contact = conn.execute(select(contacts)).mappings().one()
        rows = conn.execute(select(events).order_by(events.c.id)).mappings().all()
        consent = conn.execute(select(consents)).mappings().one()
    assert contact["email"] == "browser@example.jp"
    assert [r["contact_id"] for r in rows] == [contact["id"], contact["id"]]
    props = rows[1]["properties"]
    assert props["utm_source"] == "partner"
    assert props["utm_campaign"] == "wp2026"
    assert props["page_url"].startswith(customer_site)
    assert props["answers"]["interest"] == ["ma"]
    assert consent["text_shown"] == "メールでのご案内に同意します & <b>規約</b>"


def test_hosted_page_works_in_a_browser(
    browser: Any, ekiden: LiveServer, form: None, engine: Engine, clock: FrozenClock
) -> None:
    page = browser.new_page(user_agent=USER_AGENT, locale="en-US")
    page.goto(f"{ekiden.url}/f/whitepaper?utm_medium=email")
    assert page.title() == "Download the whitepaper"
    clock.advance(timedelta(seconds=30))
    page.get_by_role("textbox", name="Email").fill("not-an-email")
    page.locator("button[type=submit]").click()
    page.wait_for_selector("text=Enter a valid email address.")
    assert page.get_by_role("textbox", name="Email").input_value() == "not-an-email"
    page.get_by_role("textbox", name="Email").fill("hosted@example.jp")
    page.get_by_label("Last name").fill("Ito")
    page.locator("input[name=consent]").check()
    page.locator("button[type=submit]").click()
    page.wait_for_selector("text=Thank you for downloading")
    page.close()
    with engine.connect() as conn:
        props = conn.execute(select(events.c.properties)).scalar_one()
    assert props["utm_medium"] == "email"
