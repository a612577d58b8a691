"""Email tracking: the open pixel, tracked links (signed, never an open redirect), linking the
browser to the contact, and machine activity flags (R9)."""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from ekiden.clock import FrozenClock
from ekiden.config import Settings, load_settings
from ekiden.contacts.identity import contacts_for_anonymous_ids
from ekiden.contacts.service import upsert_contact
from ekiden.messaging.activity import Visit, record_click
from ekiden.messaging.compose import render_message
from ekiden.messaging.machine import APPLE_PRIVACY, HONEYPOT, network_reason, open_reason
from ekiden.messaging.models import EmailTemplateIn
from ekiden.messaging.store import create_template
from ekiden.messaging.tokens import EmailToken, seal, unseal
from ekiden.tracking.browser import PIXEL, PIXEL_COOKIE
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
HTML = """<p>{{ contact.last_name }}様</p>
<p><a href="https://www.example.co.jp/seminar?id=7">セミナー</a></p>
<p><a href="https://partner.example.com/info">パートナー</a></p>
<p><a href="https://www.example.co.jp/pricing?utm_source=flyer">料金</a></p>"""
SITE_SEMINAR = (
    "https://www.example.co.jp/seminar?id=7&utm_source=ekiden&utm_medium=email&utm_campaign=autumn"
)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(
        database_url=db_url,
        secret_key="test-secret-key-" + "x" * 32,
        base_url="https://mail.example.jp",
        email_sender_name="駅伝株式会社",
        email_sender_address="info@example.jp",
        email_postal_address="東京都千代田区1-1",
        email_site_domains="example.co.jp",
    )


@pytest.fixture
def browser(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False, headers={"User-Agent": BROWSER}) as client:
        yield client


@pytest.fixture
def hanako(engine: Engine, clock: FrozenClock) -> int:
    with engine.begin() as conn:
        contact = upsert_contact(conn, clock, email="hanako@example.jp", source_kind="api")
        create_template(
            conn,
            clock,
            EmailTemplateIn(key="seminar", name="Seminar", subject="ご案内", html=HTML),
        )
    return contact.contact_id


def message_links(engine: Engine, clock: FrozenClock, settings: Settings, contact: int) -> Any:
    """The tracked URLs of message 501 to ``contact``: paths of the pixel, the honeypot and
    every visible link, in order."""
    with engine.begin() as conn:
        rendered = render_message(
            conn,
            clock,
            settings,
            template="seminar",
            contact_id=contact,
            message_id=501,
            send_key="autumn",
        )
    base = settings.base_url
    hrefs = [html_lib.unescape(h) for h in re.findall(r'href="([^"]+)"', rendered.html)]
    clicks = [h.removeprefix(base) for h in hrefs if h.startswith(base + "/t/c/")]
    [pixel] = re.findall(r'src="' + re.escape(base) + r'(/t/o/[^"]+)"', rendered.html)
    return {"pixel": pixel, "honeypot": clicks[0], "links": clicks[1:], "text": rendered.text}


def email_events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(events).order_by(events.c.id)))


def test_open_pixel_records_an_open_with_the_send_id(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(hours=2))
    answer = browser.get(urls["pixel"])
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/gif"
    assert answer.content == PIXEL
    [opened] = email_events(engine)
    assert opened.type == "email_opened"
    assert opened.source == "email"
    assert opened.contact_id == hanako
    assert opened.properties == {"send_id": "501", "email": "seminar", "send": "autumn"}
    assert opened.occurred_at == clock.now()
    assert opened.machine is False


def test_click_redirects_to_the_sealed_url_with_utm_on_company_links(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(minutes=30))
    seminar, partner = (browser.get(path) for path in urls["links"][:2])
    clock.advance(timedelta(minutes=1))
    pricing = browser.get(urls["links"][2])
    assert seminar.status_code == partner.status_code == pricing.status_code == 302
    assert seminar.headers["location"] == SITE_SEMINAR
    assert partner.headers["location"] == "https://partner.example.com/info"  # not our site
    assert pricing.headers["location"] == (
        "https://www.example.co.jp/pricing?utm_source=flyer&utm_medium=email&utm_campaign=autumn"
    )
    clicks = email_events(engine)
    assert [e.type for e in clicks] == ["email_clicked"] * 3
    assert clicks[0].properties["url"] == SITE_SEMINAR
    assert clicks[0].properties["send_id"] == "501"
    assert clicks[0].properties["email"] == "seminar"
    assert not any(e.machine for e in clicks)


def test_text_part_links_are_tracked_too(
    engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    text = message_links(engine, clock, settings, hanako)["text"]
    assert "https://www.example.co.jp" not in text
    assert text.count("https://mail.example.jp/t/c/") == 3


@pytest.mark.parametrize("path", ["/t/c/{token}", "/t/o/{token}"])
def test_tampered_or_foreign_token_gets_a_plain_404_and_records_nothing(
    browser: TestClient,
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    hanako: int,
    path: str,
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    genuine = (urls["links"][0] if path.startswith("/t/c") else urls["pixel"]).rsplit("/", 1)[1]
    _, _, signature = genuine.partition(".")
    evil = EmailToken(
        kind="c",
        message_id=501,
        contact_id=hanako,
        email="seminar",
        send="autumn",
        issued_at=clock.now(),
        url="https://evil.example.net/",
    )
    forged_body = seal(settings.signing_key, evil).partition(".")[0]
    attempts = [
        genuine[:-2] + ("AA" if not genuine.endswith("AA") else "BB"),  # signature changed
        forged_body + "." + signature,  # another target under the old signature
        seal(b"another-secret-" + b"y" * 32, evil),  # signed with someone else's key
        genuine[:20],
        "not-a-token",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    ]
    for attempt in attempts:
        answer = browser.get(path.format(token=attempt))
        assert answer.status_code == 404
        assert answer.text == "Not Found"
        assert "location" not in answer.headers
        assert "script" not in answer.text
    assert email_events(engine) == []


def test_open_token_is_not_a_click_token(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    assert browser.get(urls["pixel"].replace("/t/o/", "/t/c/")).status_code == 404
    assert browser.get(urls["links"][0].replace("/t/c/", "/t/o/")).status_code == 404


def test_token_round_trips_everything_it_seals() -> None:
    secret = b"s" * 40
    token = EmailToken(
        kind="c",
        message_id=2**40,
        contact_id=7,
        email="seminar",
        send="秋のキャンペーン",
        issued_at=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
        variant="B",
        link=2,
        links=3,
        url="https://www.example.co.jp/製品?x=1&y=ü",
    )
    assert unseal(secret, seal(secret, token), kinds="c") == token
    assert unseal(secret, seal(secret, token), kinds="o") is None


# --- linking the browser to the contact (R2) ---


def test_human_click_links_the_browsers_anonymous_history_to_the_contact(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    anonymous = "5d3c2b1a-0f9e-4d8c-b7a6-123456789abc"
    with engine.begin() as conn:
        record_events(
            conn,
            clock,
            [NewEvent(type="page", occurred_at=clock.now(), source="pixel",
                      anonymous_id=anonymous, path="/pricing")],
        )  # fmt: skip
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(minutes=10))
    answer = browser.get(urls["links"][0], headers={"Cookie": f"{PIXEL_COOKIE}={anonymous}"})
    assert answer.status_code == 302
    with engine.connect() as conn:
        assert contacts_for_anonymous_ids(conn, [anonymous]) == {anonymous: hanako}
    page, click = email_events(engine)
    assert page.contact_id == hanako  # the earlier anonymous visit joined the contact
    assert click.anonymous_id == anonymous


def test_first_click_from_a_browser_gives_it_an_id_linked_to_the_contact(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(minutes=10))
    answer = browser.get(urls["links"][0])
    cookie = answer.cookies.get(PIXEL_COOKIE)
    assert cookie
    with engine.connect() as conn:
        assert contacts_for_anonymous_ids(conn, [cookie]) == {cookie: hanako}


def test_machine_click_links_no_browser(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    scanner = "3a3a3a3a-0f9e-4d8c-b7a6-123456789abc"
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(seconds=2))  # while the message is being delivered
    answer = browser.get(urls["links"][0], headers={"Cookie": f"{PIXEL_COOKIE}={scanner}"})
    assert answer.status_code == 302
    assert PIXEL_COOKIE not in answer.cookies
    with engine.connect() as conn:
        assert contacts_for_anonymous_ids(conn, [scanner]) == {}


# --- machine activity (R9) ---


def test_click_within_seconds_of_delivery_is_flagged(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(seconds=3))
    assert browser.get(urls["links"][0]).headers["location"] == SITE_SEMINAR
    [click] = email_events(engine)
    assert click.machine is True
    assert click.machine_reason == "clicked within 10 s of delivery"


def test_every_link_clicked_at_once_flags_the_whole_burst(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(hours=1))
    for path in urls["links"]:
        browser.get(path)
        clock.advance(timedelta(seconds=1))
    clicks = email_events(engine)
    assert len(clicks) == 3
    assert all(c.machine for c in clicks)
    assert {c.machine_reason for c in clicks} == {"every link clicked within 10 s"}


def test_a_person_clicking_two_of_three_links_is_not_flagged(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(hours=1))
    browser.get(urls["links"][0])
    clock.advance(timedelta(seconds=2))
    browser.get(urls["links"][0])
    browser.get(urls["links"][1])
    clock.advance(timedelta(minutes=5))
    browser.get(urls["links"][2])  # the last one much later
    assert not any(c.machine for c in email_events(engine))


def test_honeypot_link_is_flagged_and_redirects_nowhere(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(hours=1))
    answer = browser.get(urls["honeypot"])
    assert answer.status_code == 200
    assert "location" not in answer.headers
    [click] = email_events(engine)
    assert click.machine is True
    assert click.machine_reason == HONEYPOT


def test_honeypot_link_is_invisible_to_people(
    engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    with engine.begin() as conn:
        rendered = render_message(
            conn, clock, settings, template="seminar", contact_id=hanako, message_id=5,
            send_key="x",
        )  # fmt: skip
    [anchor] = [a for a in re.findall(r"<a [^>]*>", rendered.html) if "display:none" in a]
    assert 'aria-hidden="true"' in anchor
    assert 'tabindex="-1"' in anchor
    assert re.search(re.escape(anchor) + r"</a>", rendered.html)  # no text to see
    assert rendered.text.count("/t/c/") == 3  # not in the text part


def test_known_scanner_user_agent_is_flagged(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(hours=1))
    browser.get(urls["links"][0], headers={"User-Agent": "Mozilla/5.0 Barracuda Sentinel"})
    browser.get(urls["pixel"], headers={"User-Agent": "python-requests/2.32"})
    click, opened = email_events(engine)
    assert click.machine_reason == "mail security scanner (Barracuda)"
    assert opened.machine_reason == "scripted HTTP client"


def test_known_scanner_address_range_is_flagged(
    app: FastAPI, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(hours=1))
    with TestClient(
        app, follow_redirects=False, headers={"User-Agent": BROWSER}, client=("40.107.22.5", 443)
    ) as scanner:
        assert scanner.get(urls["links"][0]).status_code == 302
    [click] = email_events(engine)
    assert click.ip == "40.107.22.5"
    assert click.machine_reason == "mail security scanner (Microsoft Defender)"


def test_apple_mail_privacy_prefetch_is_flagged_but_gmail_proxy_open_is_a_person(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(minutes=1))
    browser.get(urls["pixel"], headers={"User-Agent": "Mozilla/5.0"})
    browser.get(urls["pixel"], headers={"User-Agent": GMAIL_PROXY})
    apple, gmail = email_events(engine)
    assert apple.machine is True
    assert apple.machine_reason == APPLE_PRIVACY
    assert gmail.machine is False


def test_address_rules_cover_their_ranges_only() -> None:
    assert network_reason("104.47.1.9") == "mail security scanner (Microsoft Defender)"
    assert network_reason("205.139.110.40") == "mail security scanner (Mimecast)"
    assert network_reason("148.163.150.1") == "mail security scanner (Proofpoint)"
    assert network_reason("203.0.113.9") is None
    assert network_reason("not an address") is None
    assert open_reason("17.58.1.2", BROWSER) == APPLE_PRIVACY
    assert open_reason("198.51.100.7", BROWSER) is None


def test_click_of_a_merged_away_contact_counts_for_the_survivor(
    engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    token = EmailToken(
        kind="c",
        message_id=9,
        contact_id=424242,  # no such contact
        email="seminar",
        send="autumn",
        issued_at=clock.now(),
        url="https://www.example.co.jp/",
    )
    clock.advance(timedelta(hours=1))
    with engine.begin() as conn:
        assert record_click(conn, clock, settings, token, Visit(None, BROWSER)) is False
    assert email_events(engine) == []


def test_head_request_of_a_link_checker_redirects_but_records_nothing(
    browser: TestClient, engine: Engine, clock: FrozenClock, settings: Settings, hanako: int
) -> None:
    urls = message_links(engine, clock, settings, hanako)
    clock.advance(timedelta(hours=1))
    answer = browser.head(urls["links"][0])
    assert answer.status_code == 302
    assert answer.headers["location"] == SITE_SEMINAR
    assert email_events(engine) == []
