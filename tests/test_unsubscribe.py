"""Consent and unsubscribe: who may get which email, the RFC 8058 one-click POST, the confirm
page that a link scanner cannot trigger, and the preference page."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urljoin

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update

from ekiden.clock import FrozenClock
from ekiden.config import Settings, load_settings
from ekiden.contacts.consent import consent_history, record_consent, suppress, unsubscribe
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid
from ekiden.messaging.compliance import mailable, may_send, may_send_many
from ekiden.messaging.compose import render_message
from ekiden.messaging.models import EmailTemplateIn
from ekiden.messaging.store import create_template
from ekiden.tracking.tables import events

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(
        database_url=db_url,
        secret_key="test-secret-key-" + "x" * 32,
        base_url="https://mail.example.jp",
        email_sender_name="駅伝株式会社",
        email_sender_address="info@example.jp",
        email_postal_address="東京都千代田区1-1",
    )


@pytest.fixture
def browser(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False, headers={"User-Agent": BROWSER}) as client:
        yield client


def subscriber(engine: Engine, clock: FrozenClock, address: str = "hanako@example.jp") -> int:
    with engine.begin() as conn:
        contact_id = upsert_contact(conn, clock, email=address, source_kind="api").contact_id
        record_consent(
            conn, clock, contact_id, status="granted", source="form", source_ref="seminar"
        )
    return contact_id


@pytest.fixture
def unsubscribe_path(engine: Engine, clock: FrozenClock, settings: Settings) -> str:
    """The /u/{token} path of a marketing message to a consenting contact."""
    contact_id = subscriber(engine, clock)
    with engine.begin() as conn:
        create_template(
            conn,
            clock,
            EmailTemplateIn(key="news", name="News", subject="お知らせ", html="<p>x</p>"),
        )
        rendered = render_message(
            conn, clock, settings, template="news", contact_id=contact_id, message_id=77,
            send_key="november",
        )  # fmt: skip
    return rendered.unsubscribe_url.removeprefix(settings.base_url)


def csrf(browser: TestClient, preferences: str) -> str:
    """The form token of the preference page (its POST needs one)."""
    [token] = re.findall(r'name="csrf" value="([^"]+)"', browser.get(preferences).text)
    return token


def contact_row(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(contacts)).one()


def unsubscribed_events(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(events).where(events.c.type == "email_unsubscribed")))


def test_get_shows_a_confirm_page_and_changes_nothing(
    browser: TestClient, engine: Engine, unsubscribe_path: str, stored: Any
) -> None:
    before = stored()
    for _ in range(3):  # a security gateway fetching the link, then the person
        page = browser.get(unsubscribe_path)
        assert page.status_code == 200
        assert '<form method="post">' in page.text  # back to this very URL
        assert "<button" in page.text
    assert stored() == before
    assert "h***@example.jp" in page.text
    assert "hanako@example.jp" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    [link] = re.findall(r'href="([^"]+/preferences)"', page.text)
    assert urljoin(unsubscribe_path, link) == unsubscribe_path + "/preferences"


def test_one_click_post_unsubscribes_at_once_with_evidence(
    browser: TestClient, engine: Engine, clock: FrozenClock, unsubscribe_path: str
) -> None:
    answer = browser.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    row = contact_row(engine)
    assert row.unsubscribed_at == clock.now()
    assert row.email_consent == "withdrawn"
    with engine.connect() as conn:
        latest = consent_history(conn, row.id)[0]
        assert may_send(conn, row.id, "marketing") == "unsubscribed"
        assert may_send(conn, row.id, "transactional") is None
    assert latest.status == "withdrawn"
    assert latest.source == "unsubscribe"
    assert latest.source_ref == "email:news:77:one-click"
    assert latest.user_agent == BROWSER
    assert latest.ip == "testclient"
    [event] = unsubscribed_events(engine)
    assert event.contact_id == row.id
    assert event.source == "email"
    assert event.properties == {
        "send_id": "77",
        "email": "news",
        "send": "november",
        "method": "one-click",
    }


def test_one_click_post_as_multipart_form_works_too(
    browser: TestClient, engine: Engine, unsubscribe_path: str
) -> None:
    answer = browser.post(unsubscribe_path, files={"List-Unsubscribe": (None, "One-Click")})
    assert answer.status_code == 200
    assert contact_row(engine).unsubscribed_at is not None
    assert unsubscribed_events(engine)[0].properties["method"] == "one-click"


def test_confirm_button_unsubscribes_once(
    browser: TestClient, engine: Engine, clock: FrozenClock, unsubscribe_path: str
) -> None:
    assert browser.post(unsubscribe_path, data={"confirm": "1"}).status_code == 200
    first = contact_row(engine).unsubscribed_at
    clock.advance(timedelta(hours=1))
    assert browser.post(unsubscribe_path, data={"confirm": "1"}).status_code == 200
    assert contact_row(engine).unsubscribed_at == first  # the first opt-out's time is kept
    [event] = unsubscribed_events(engine)
    assert event.properties["method"] == "page"


def test_invalid_unsubscribe_token_is_a_plain_404_and_changes_nothing(
    browser: TestClient, unsubscribe_path: str, stored: Any
) -> None:
    before = stored()
    tampered = unsubscribe_path[:-3] + ("xyz" if not unsubscribe_path.endswith("xyz") else "abc")
    for path in (tampered, "/u/nothing", tampered + "/preferences"):
        assert browser.get(path).status_code == 404
        answer = browser.post(path, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 404
        assert answer.text == "Not Found"
    assert stored() == before


def test_pages_speak_japanese_by_default_and_english_when_asked(
    browser: TestClient, unsubscribe_path: str
) -> None:
    japanese = browser.get(unsubscribe_path)
    assert '<html lang="ja">' in japanese.text
    assert "配信停止" in japanese.text
    english = browser.get(unsubscribe_path, headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in english.text
    assert "Unsubscribe" in english.text


def test_preference_page_unsubscribes_and_opts_back_in_with_evidence(
    browser: TestClient, engine: Engine, clock: FrozenClock, unsubscribe_path: str
) -> None:
    preferences = unsubscribe_path + "/preferences"
    page = browser.get(preferences)
    assert page.status_code == 200
    assert re.search(r'value="stay" checked', page.text)
    form = {"choice": "unsubscribe", "csrf": csrf(browser, preferences)}
    assert browser.post(preferences, data=form).status_code == 200
    row = contact_row(engine)
    assert row.unsubscribed_at is not None
    assert re.search(r'value="unsubscribe" checked', browser.get(preferences).text)
    clock.advance(timedelta(days=1))
    form = {"choice": "stay", "csrf": csrf(browser, preferences)}
    assert browser.post(preferences, data=form).status_code == 200
    row = contact_row(engine)
    assert row.unsubscribed_at is None
    assert row.email_consent == "granted"
    with engine.connect() as conn:
        latest = consent_history(conn, row.id)[0]
        assert may_send(conn, row.id, "marketing") is None
    assert latest.status == "granted"
    assert latest.text_shown is not None
    assert "駅伝株式会社" in latest.text_shown
    assert latest.source_ref == "email-preferences:news:77"


def test_preference_page_refuses_an_unknown_choice(
    browser: TestClient, unsubscribe_path: str, stored: Any
) -> None:
    preferences = unsubscribe_path + "/preferences"
    form = {"choice": "everything", "csrf": csrf(browser, preferences)}
    before = stored()
    answer = browser.post(preferences, data=form)
    assert answer.status_code == 400
    assert stored() == before


def test_unsubscribe_stops_messages_already_queued(
    browser: TestClient, engine: Engine, unsubscribe_path: str
) -> None:
    contact_id = contact_row(engine).id
    with engine.connect() as conn:
        assert may_send(conn, contact_id, "marketing") is None  # when it was enqueued
    browser.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
    with engine.connect() as conn:
        assert may_send(conn, contact_id, "marketing") == "unsubscribed"  # at delivery


# --- who may get which email ---


@pytest.mark.parametrize(
    ("state", "marketing", "transactional"),
    [
        ("consented", None, None),
        ("no_consent", "no_consent", None),
        ("withdrawn", "no_consent", None),
        ("unsubscribed", "unsubscribed", None),
        ("suppressed", "suppressed", "suppressed"),
        ("hard_bounced", "hard_bounced", "hard_bounced"),
        ("no_email", "no_email", "no_email"),
    ],
)
def test_consent_matrix(
    engine: Engine, clock: FrozenClock, state: str, marketing: str | None, transactional: str | None
) -> None:
    with engine.begin() as conn:
        if state == "no_email":
            contact_id = upsert_contact(
                conn, clock, external_id="u-1", source_kind="api"
            ).contact_id
        else:
            contact_id = upsert_contact(
                conn, clock, email="a@example.jp", source_kind="api"
            ).contact_id
        if state != "no_consent":
            record_consent(conn, clock, contact_id, status="granted", source="api")
        if state == "withdrawn":
            record_consent(conn, clock, contact_id, status="withdrawn", source="api")
        if state == "unsubscribed":
            unsubscribe(conn, clock, contact_id)
        if state == "suppressed":
            suppress(conn, clock, contact_id, reason="complaint")
        if state == "hard_bounced":
            suppress(conn, clock, contact_id, reason="hard_bounce: 550 5.1.1 user unknown")
    with engine.connect() as conn:
        assert may_send(conn, contact_id, "marketing") == marketing
        assert may_send(conn, contact_id, "transactional") == transactional
        assert may_send_many(conn, [contact_id], "marketing") == {contact_id: marketing}


def test_unknown_contact_and_unknown_category(engine: Engine) -> None:
    with engine.connect() as conn:
        assert may_send(conn, 999, "marketing") == "unknown_contact"
        with pytest.raises(Invalid, match="marketing or transactional"):
            may_send(conn, 999, "newsletter")


STATES = st.fixed_dictionaries(
    {
        "email": st.booleans(),
        "consent": st.sampled_from(["none", "granted", "withdrawn"]),
        "unsubscribed": st.booleans(),
        "suppressed": st.sampled_from([None, "complaint", "hard_bounce"]),
        "merged": st.booleans(),
    }
)
_numbers = itertools.count()


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(state=STATES)
def test_nobody_without_consent_unsubscribed_or_suppressed_gets_marketing_mail(
    engine: Engine, clock: FrozenClock, state: dict[str, Any]
) -> None:
    n = next(_numbers)
    with engine.begin() as conn:
        contact_id = upsert_contact(
            conn, clock, email=f"p{n}@example.jp", external_id=f"p{n}", source_kind="api"
        ).contact_id
        winner = upsert_contact(conn, clock, external_id=f"w{n}", source_kind="api").contact_id
        values: dict[str, Any] = {
            "email": f"p{n}@example.jp" if state["email"] else None,
            "email_consent": state["consent"],
            "unsubscribed_at": clock.now() if state["unsubscribed"] else None,
            "suppressed_at": clock.now() if state["suppressed"] else None,
            "suppression_reason": state["suppressed"],
            "merged_into_id": winner if state["merged"] else None,
        }
        conn.execute(update(contacts).where(contacts.c.id == contact_id).values(values))
    allowed = (
        state["email"]
        and state["consent"] == "granted"
        and not state["unsubscribed"]
        and state["suppressed"] is None
        and not state["merged"]
    )
    with engine.connect() as conn:
        answer = may_send(conn, contact_id, "marketing")
        in_audience = conn.execute(
            select(contacts.c.id).where(contacts.c.id == contact_id, mailable("marketing"))
        ).first()
        transactional = may_send(conn, contact_id, "transactional")
        in_transactional = conn.execute(
            select(contacts.c.id).where(contacts.c.id == contact_id, mailable("transactional"))
        ).first()
    assert (answer is None) == bool(allowed)
    assert (in_audience is not None) == bool(allowed)  # the audience query agrees
    assert (in_transactional is not None) == (transactional is None)
    if state["suppressed"] or not state["email"] or state["merged"]:
        assert transactional is not None
