"""The preference page in a real browser: headless Chromium opens the link of a delivered email
(received by a real SMTP server), changes topics, saves, and unsubscribes from all; the database
is checked afterwards.

Needs Debian's /usr/bin/chromium; skipped without it unless EKIDEN_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select
from tests.conftest import LiveServer
from tests.test_email_topics import deliver, in_topic, make_topic, send_to

import test_snippet_browser
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.tables import contacts
from ekiden.messaging import topics
from ekiden.messaging.tables import email_topic_choices
from ekiden.tracking.tables import events
from ekiden.web.app import create_app
from ekiden.web.deps import AppContext
from smtp_server import SmtpTestServer
from test_sending_support import add_contacts, add_template, mail_settings

USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
pytestmark = pytest.mark.browser


# one Chromium per module, launched as the snippet tests do (same flags, shop.test mapped)
browser = test_snippet_browser.browser


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def ekiden(
    db_url: str, smtp: SmtpTestServer, engine: Engine, clock: FrozenClock
) -> Iterator[tuple[LiveServer, Settings]]:
    """A live server whose public URL (used in the email's links) is its real address."""
    settings = mail_settings(db_url, smtp.port)
    app = create_app(settings, engine=engine, clock=clock)
    server = LiveServer(app)
    public = settings.model_copy(update={"base_url": server.url})
    app.state.ctx = AppContext(settings=public, engine=engine, clock=clock)
    with server:
        yield server, public


@pytest.fixture
def preferences_url(
    ekiden: tuple[LiveServer, Settings], engine: Engine, clock: FrozenClock, smtp: SmtpTestServer
) -> str:
    """The preference link of a newsletter email, as it arrived at the SMTP server."""
    _, settings = ekiden
    make_topic(engine, clock, "newsletter", position=1)
    make_topic(engine, clock, "seminars", default=False, position=2)
    make_topic(engine, clock, "products", position=3)
    add_template(engine, clock, "monthly")
    in_topic(engine, clock, "monthly", "newsletter")
    add_contacts(engine, clock, 1, prefix="hanako")
    send_to(engine, clock, settings, "monthly", "hanako")
    deliver(engine, clock, settings)
    [message] = smtp.parsed()
    html = message.get_body(("html",))
    assert html is not None
    links = re.findall(r'href="([^"]+/preferences)"', html.get_content())
    assert links, "the email links its preference page"
    assert links[0].startswith(settings.base_url)
    return str(links[0])


def contact_state(engine: Engine) -> dict[str, bool]:
    with engine.connect() as conn:
        contact_id = conn.execute(select(contacts.c.id)).scalar_one()
        return {t.topic: t.subscribed for t in topics.contact_topics(conn, contact_id)}


def test_topics_changed_and_saved_in_a_browser(
    browser: Any, preferences_url: str, engine: Engine
) -> None:
    page = browser.new_page(user_agent=USER_AGENT, locale="ja-JP")
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(preferences_url)
    assert page.title() == "メール配信設定"
    newsletter = page.get_by_role("checkbox", name=re.compile("ニュースレター"))
    seminars = page.get_by_role("checkbox", name=re.compile("セミナー案内"))
    products = page.get_by_role("checkbox", name=re.compile("製品情報"))
    assert newsletter.is_checked()
    assert not seminars.is_checked()
    assert products.is_checked()
    assert page.get_by_role("radio", name=re.compile("引き続き受け取る")).is_checked()
    with engine.connect() as conn:  # opening the page stored nothing
        assert conn.execute(select(email_topic_choices)).first() is None
    newsletter.uncheck()
    seminars.check()
    page.get_by_role("button", name="保存").click()
    page.wait_for_selector("text=メール配信設定を保存しました。")
    assert "ニュースレター: 受け取らない" in page.inner_text("ul.topics")
    assert "セミナー案内: 受け取る" in page.inner_text("ul.topics")
    assert contact_state(engine) == {"newsletter": False, "seminars": True, "products": True}
    with engine.connect() as conn:
        choice = conn.execute(
            select(email_topic_choices).where(email_topic_choices.c.subscribed.is_(False))
        ).one()
        changed = conn.execute(select(events).where(events.c.type == "email_topic_changed")).all()
    assert choice.user_agent == USER_AGENT
    assert choice.ip == "127.0.0.1"
    assert len(changed) == 2
    # back to the page from the confirmation: it shows what was saved
    page.get_by_role("link", name="メール配信設定を変更する").click()
    page.wait_for_selector("form")
    assert not page.get_by_role("checkbox", name=re.compile("ニュースレター")).is_checked()
    assert page.get_by_role("checkbox", name=re.compile("セミナー案内")).is_checked()
    assert errors == []  # e.g. no Content-Security-Policy violation
    page.close()


def test_english_page_and_unsubscribe_from_all_in_a_browser(
    browser: Any, preferences_url: str, engine: Engine
) -> None:
    page = browser.new_page(user_agent=USER_AGENT, locale="ja-JP")
    page.goto(preferences_url)
    page.get_by_role("link", name="English").click()
    page.wait_for_selector("html[lang=en]")
    assert page.get_by_role("checkbox", name=re.compile("Seminar invitations")).is_visible()
    page.get_by_role("radio", name="Unsubscribe from all marketing email").check()
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=You have been unsubscribed.")
    with engine.connect() as conn:
        row = conn.execute(select(contacts)).one()
        unsubscribed = conn.execute(
            select(events).where(events.c.type == "email_unsubscribed")
        ).one()
    assert row.unsubscribed_at is not None
    assert unsubscribed.properties["method"] == "preferences"
    assert contact_state(engine) == {"newsletter": True, "seminars": False, "products": True}
    page.close()


def test_a_form_posted_from_another_site_is_refused(
    browser: Any, preferences_url: str, engine: Engine, stored: Any
) -> None:
    """A page elsewhere that posts to the preference URL (CSRF): the browser says it is
    cross-site, and there is no valid form token either."""
    page = browser.new_page(user_agent=USER_AGENT, locale="ja-JP")
    page.goto("about:blank")
    before = stored()
    page.set_content(
        f'<form method="post" action="{preferences_url}">'
        '<input name="choice" value="unsubscribe"><button>go</button></form>'
    )
    with page.expect_navigation():
        page.click("button")
    assert page.title() == "メール配信設定"
    assert "このフォームは配信設定ページからのみ送信できます" in page.content()
    assert stored() == before
    page.close()
