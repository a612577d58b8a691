"""The browser snippet in a real browser: headless Chromium visits a customer's website that
includes ``/t.js`` from a live Ekiden server, and the database is checked afterwards.

Needs Debian's /usr/bin/chromium. Without it the tests skip, unless EKIDEN_REQUIRE_BROWSER=1
(CI) makes a missing browser a failure.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, func, select
from tests.conftest import LiveServer
from tests.test_forms import download_form

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tables import contacts
from ekiden.forms.store import create_form
from ekiden.tracking.tables import events
from ekiden.web.app import create_app
from ekiden.web.deps import AppContext

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # the customer's site gets a name of its own: another site than Ekiden, as in production
    "--host-resolver-rules=MAP shop.test 127.0.0.1",
]
# a person's browser: HeadlessChrome would (rightly) be flagged as machine activity
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
UTM = "utm_source=newsletter&utm_medium=email&utm_campaign=autumn-sale&utm_content=hero"

pytestmark = pytest.mark.browser
T = TypeVar("T")


def _require_browser() -> None:
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -e .[test])"
    if missing is None:
        return
    if os.environ.get("EKIDEN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"EKIDEN_REQUIRE_BROWSER=1 but {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


# --- the customer's website -------------------------------------------------------------------

PAGES = {
    "/landing": ("Autumn sale", '<a id="next" href="/pricing">Pricing</a>'),
    "/pricing": (
        "Pricing",
        """<form id="signup" method="post" action="/signup">
             <input type="text" name="last_name" value="">
             <input type="text" name="first_name" value="">
             <input type="email" name="email" value="">
             <input type="text" name="comment" value="">
             <button type="submit">Send</button>
           </form>""",
    ),
    "/thanks": ("Thank you", "<p>Thank you.</p>"),
    "/app": (
        "App",
        """<button id="go" onclick="document.title = 'App plans';
             history.pushState({}, '', '/app/plans?utm_source=inapp')">Plans</button>""",
    ),
    "/login": (
        "Log in",
        """<form id="login" method="post" action="/signup">
             <input type="email" name="email"><input type="password" name="password">
             <button type="submit">Log in</button>
           </form>
           <form id="private" method="post" action="/signup" data-ekiden-ignore>
             <input type="email" name="email"><button type="submit">Send</button>
           </form>""",
    ),
}


class CustomerSite:
    """A tiny website on another port whose pages include the snippet from Ekiden."""

    def __init__(self, snippet_tag: Callable[[str], str]) -> None:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path not in PAGES:
                    self.send_error(404)
                    return
                title, content = PAGES[path]
                body = (
                    f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
                    f"{site.snippet_tag(path)}</head><body>{content}</body></html>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(303)
                self.send_header("Location", "/thanks")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.snippet_tag = snippet_tag
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://shop.test:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site(live_server: Any, ingest_key: str) -> Iterator[CustomerSite]:
    def tag(path: str) -> str:
        extra = ""
        if path == "/login":
            extra = " data-respect-dnt"
        return (
            f'<script async src="{live_server.url}/t.js" data-key="{ingest_key}"{extra}></script>'
        )

    customer = CustomerSite(tag)
    yield customer
    customer.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(user_agent=USER_AGENT)
    yield context.new_page()
    context.close()


# --- helpers ----------------------------------------------------------------------------------


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def rows(engine: Engine, *where: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(events).where(*where).order_by(events.c.id)))


def page_views(engine: Engine, path: str) -> list[Any]:
    return rows(engine, events.c.type == "page", events.c.path == path)


def contact_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(contacts)).scalar_one())


def set_visible(page: Any, visible: bool) -> None:
    """Hide or show the tab as a switch to another tab would (headless pages are always
    visible): the snippet must stop counting active time while hidden."""
    page.evaluate(
        """(visible) => {
             Object.defineProperty(document, "visibilityState",
               {configurable: true, get: () => (visible ? "visible" : "hidden")});
             document.dispatchEvent(new Event("visibilitychange"));
           }""",
        visible,
    )


# --- the scenario -----------------------------------------------------------------------------


def test_anonymous_visit_joins_the_contact_who_submits_a_form(
    page: Any, site: CustomerSite, engine: Engine
) -> None:
    landing_url = f"{site.url}/landing?{UTM}"
    page.goto(landing_url)
    opened = time.monotonic()  # loaded: the snippet is counting
    [landing] = wait_for(lambda: page_views(engine, "/landing"), "the landing page view")
    anonymous_id = page.evaluate("ekiden.anonymousId()")
    assert landing.anonymous_id == anonymous_id
    assert landing.contact_id is None
    assert landing.source == "browser"

    # 0.8 s visible, 1.5 s in another tab, 0.8 s visible again: about 1.6 s of active time
    page.wait_for_timeout(800)
    set_visible(page, False)
    page.wait_for_timeout(1500)
    set_visible(page, True)
    page.wait_for_timeout(800)
    page.click("#next")
    page.wait_for_url(f"{site.url}/pricing")
    # the landing page lived about this long since it loaded (leaving included)
    lived_ms = (time.monotonic() - opened) * 1000
    [pricing] = wait_for(lambda: page_views(engine, "/pricing"), "the pricing page view")

    def landing_dwell_total() -> int | None:
        dwell = rows(engine, events.c.type == "page_dwell", events.c.path == "/landing")
        # the increments sent on hide and on leaving the page
        return sum(d.dwell_ms for d in dwell) if len(dwell) >= 2 else None

    total = wait_for(landing_dwell_total, "the landing page's dwell reports")
    # counted, the hidden 1.5 s would put the total near the page's whole life; a slow machine
    # stretches clicking and leaving, so the bound is that life less the hidden time (plus
    # half a second for what the snippet counted before the page's load event)
    hidden_excluded = lived_ms - 1500 + 500
    assert 1400 <= total < hidden_excluded, (
        f"active time {total} ms of a page that lived {lived_ms:.0f} ms should exclude the "
        "hidden 1.5 s"
    )
    assert contact_count(engine) == 0, "anonymous page views must not create contacts"

    page.fill("input[name=last_name]", "山田")
    page.fill("input[name=first_name]", "花子")
    page.fill("input[name=email]", "Hanako.Yamada@Example.JP")
    page.fill("input[name=comment]", "secret comment")
    page.click("#signup button")
    page.wait_for_url(f"{site.url}/thanks")

    def contact() -> Any:
        with engine.connect() as conn:
            return conn.execute(select(contacts)).first()

    person = wait_for(contact, "the contact created by identify")
    assert contact_count(engine) == 1
    assert person.email == "Hanako.Yamada@example.jp"
    assert (person.last_name, person.first_name) == ("山田", "花子")
    [identify] = rows(engine, events.c.type == "identify")
    assert identify.properties.get("email") == "Hanako.Yamada@Example.JP"
    assert "comment" not in identify.properties  # no other form values are collected
    assert "secret comment" not in str(identify.properties)

    # the anonymous history joined the contact
    landing, pricing = page_views(engine, "/landing")[0], page_views(engine, "/pricing")[0]
    assert landing.contact_id == pricing.contact_id == person.id
    assert landing.properties["title"] == "Autumn sale"
    assert landing.properties["url"] == landing_url
    assert landing.properties["utm_source"] == "newsletter"
    assert landing.properties["utm_medium"] == "email"
    assert landing.properties["utm_campaign"] == "autumn-sale"
    assert landing.properties["utm_content"] == "hero"
    assert landing.context["campaign"]["name"] == "autumn-sale"
    assert pricing.properties["title"] == "Pricing"
    assert pricing.properties["referrer"] == landing_url
    assert pricing.anonymous_id == landing.anonymous_id == anonymous_id
    assert landing.machine is False
    for dwell in rows(engine, events.c.type == "page_dwell", events.c.path == "/landing"):
        assert dwell.contact_id == person.id
        assert dwell.dwell_ms > 0
        assert dwell.properties["page_message_id"] == landing.message_id
    # the thank-you page, viewed after identify, is the contact's from the start
    [thanks] = wait_for(lambda: page_views(engine, "/thanks"), "the thank-you page view")
    assert thanks.contact_id == person.id


def test_single_page_navigation_is_a_new_page_view(
    page: Any, site: CustomerSite, engine: Engine
) -> None:
    page.goto(f"{site.url}/app")
    [first] = wait_for(lambda: page_views(engine, "/app"), "the app's first page view")
    page.wait_for_timeout(300)
    page.click("#go")
    [second] = wait_for(lambda: page_views(engine, "/app/plans"), "the pushState page view")
    assert second.properties["referrer"] == f"{site.url}/app"
    assert second.properties["title"] == "App plans"
    assert second.properties["utm_source"] == "inapp"
    assert second.message_id != first.message_id
    # the first view's active time was reported when the second began
    [dwell] = rows(engine, events.c.type == "page_dwell")
    assert dwell.path == "/app"
    assert dwell.properties["page_message_id"] == first.message_id
    assert 250 <= dwell.dwell_ms < 5000
    page.go_back()
    wait_for(lambda: len(page_views(engine, "/app")) == 2, "the back-button page view")


def test_cleared_cookie_is_restored_from_local_storage(
    page: Any, site: CustomerSite, engine: Engine
) -> None:
    def cookie() -> str | None:
        found = [c["value"] for c in page.context.cookies() if c["name"] == "ekiden_aid"]
        return found[0] if found else None

    page.goto(f"{site.url}/landing")
    first = page.evaluate("ekiden.anonymousId()")
    assert cookie() == first
    assert page.evaluate("localStorage.getItem('ekiden_aid')") == first

    # only the cookie cleared (a browser setting, a cookie cleaner): localStorage restores it
    page.context.clear_cookies()
    page.goto(f"{site.url}/pricing")
    assert page.evaluate("ekiden.anonymousId()") == first
    assert cookie() == first

    # both cleared: a new anonymous visitor
    page.context.clear_cookies()
    page.evaluate("localStorage.clear()")
    page.goto(f"{site.url}/thanks")
    second = page.evaluate("ekiden.anonymousId()")
    assert second != first
    assert cookie() == second

    wait_for(lambda: page_views(engine, "/thanks"), "the third page view")
    assert [r.anonymous_id for r in page_views(engine, "/landing")] == [first]
    assert [r.anonymous_id for r in page_views(engine, "/pricing")] == [first]
    assert [r.anonymous_id for r in page_views(engine, "/thanks")] == [second]


def test_do_not_track_password_and_ignored_forms_are_respected(
    browser: Any, site: CustomerSite, engine: Engine
) -> None:
    # /login opts in to data-respect-dnt; this browser sends Do Not Track
    context = browser.new_context(user_agent=USER_AGENT)
    context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
    )
    page = context.new_page()
    page.goto(f"{site.url}/login")
    assert page.evaluate("ekiden.anonymousId()") is None
    assert not [c for c in context.cookies() if c["name"] == "ekiden_aid"]
    context.close()

    # without Do Not Track: the page view is recorded, but neither a form with a password
    # nor one marked data-ekiden-ignore sends an identify
    context = browser.new_context(user_agent=USER_AGENT)
    page = context.new_page()
    page.goto(f"{site.url}/login")
    page.fill("#login input[name=email]", "user@example.jp")
    page.fill("#login input[name=password]", "hunter2")
    page.click("#login button")
    page.wait_for_url(f"{site.url}/thanks")
    page.goto(f"{site.url}/login")
    page.fill("#private input[name=email]", "private@example.jp")
    page.click("#private button")
    page.wait_for_url(f"{site.url}/thanks")
    wait_for(lambda: len(page_views(engine, "/thanks")) == 2, "both thank-you page views")
    context.close()

    assert len(page_views(engine, "/login")) == 2  # the two visits without Do Not Track
    assert rows(engine, events.c.type == "identify") == []
    assert contact_count(engine) == 0
    assert "hunter2" not in str([r.properties for r in rows(engine)])


# --- with Ekiden's embedded form (GET /f/{slug}.js) ----------------------------------------


@pytest.fixture
def embed_site(
    settings: Settings, engine: Engine, clock: FrozenClock, ingest_key: str, admin_key: str
) -> Iterator[tuple[CustomerSite, LiveServer]]:
    """A live Ekiden whose public URL is its real address (the embed posts there), a form,
    and a customer page carrying both the snippet and the embedded form."""
    app = create_app(settings, engine=engine, clock=clock)
    server = LiveServer(app)
    public = settings.model_copy(update={"base_url": server.url})
    app.state.ctx = AppContext(settings=public, engine=engine, clock=clock)
    with server:
        with engine.begin() as conn:
            fields = download_form()["fields"]
            # email, last name, company and the comment: no custom field to define first
            create_form(conn, clock, download_form(fields=fields[:3] + fields[5:]))
        PAGES["/whitepaper"] = (
            "Whitepaper",
            f'<div data-ekiden-form="whitepaper"></div><script async src="{server.url}'
            '/f/whitepaper.js"></script>',
        )
        customer = CustomerSite(
            lambda _: f'<script async src="{server.url}/t.js" data-key="{ingest_key}"></script>'
        )
        yield customer, server
        customer.close()
        del PAGES["/whitepaper"]


def test_embedded_form_joins_the_snippets_anonymous_history(
    page: Any, embed_site: tuple[CustomerSite, LiveServer], engine: Engine, clock: FrozenClock
) -> None:
    site, _ = embed_site
    page.goto(f"{site.url}/landing?{UTM}")
    wait_for(lambda: page_views(engine, "/landing"), "the landing page view")
    page.goto(f"{site.url}/whitepaper")
    page.wait_for_selector("form.ekiden-form")
    anonymous_id = page.evaluate("ekiden.anonymousId()")
    page.locator("form.ekiden-form input[name=email]").fill("embed@example.jp")
    page.locator("form.ekiden-form input[name=last_name]").fill("鈴木")
    page.locator("input[name=consent]").check()
    clock.advance(timedelta(seconds=30))  # a person takes a while; an instant post is a bot
    page.locator("form.ekiden-form button[type=submit]").click()
    page.wait_for_selector(".ekiden-form[role=status]")  # the thank-you message

    [submitted] = wait_for(
        lambda: rows(engine, events.c.type == "form_submitted"), "the form submission"
    )
    assert submitted.contact_id is not None
    assert submitted.anonymous_id == anonymous_id
    views = page_views(engine, "/landing") + page_views(engine, "/whitepaper")
    assert len(views) == 2
    assert {v.contact_id for v in views} == {submitted.contact_id}
    # the embed records the submission itself: the snippet sends no second identify for it
    assert rows(engine, events.c.type == "identify") == []
