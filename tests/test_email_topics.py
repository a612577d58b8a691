"""Subscription topics: the API and CLI, templates in a topic, contacts' choices with evidence,
the preference page reached from a delivered email, and sending that respects topics — checked
at a real SMTP server (aiosmtpd), on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update
from typer.testing import CliRunner

import ekiden.messaging.handler  # noqa: F401  (registers the "email" handler)
from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.consent import unsubscribe
from ekiden.contacts.merge import merge_contacts
from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid
from ekiden.messaging import sends, topics
from ekiden.messaging.compliance import TOPIC_UNSUBSCRIBED, mailable, may_send, may_send_many
from ekiden.messaging.models import Localized, TopicIn
from ekiden.messaging.sending import send_email
from ekiden.messaging.sends_models import SendIn
from ekiden.messaging.sends_tables import email_messages
from ekiden.messaging.tables import email_templates, email_topic_choices
from ekiden.outbox import deliver_due
from ekiden.tracking.tables import events
from smtp_server import SmtpTestServer
from test_sending_support import add_contacts, add_template, mail_settings

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def settings(db_url: str, smtp: SmtpTestServer) -> Settings:
    return mail_settings(db_url, smtp.port)


@pytest.fixture
def browser(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False, headers={"User-Agent": BROWSER}) as client:
        yield client


def make_topic(
    engine: Engine, clock: FrozenClock, key: str, *, default: bool = True, position: int = 0
) -> None:
    names = {
        "newsletter": ("ニュースレター", "Newsletter"),
        "seminars": ("セミナー案内", "Seminar invitations"),
        "products": ("製品情報", "Product news"),
    }
    ja, en = names.get(key, (key, key))
    with engine.begin() as conn:
        topics.create_topic(
            conn,
            clock,
            TopicIn(
                key=key,
                name=Localized(ja=ja, en=en),
                description=Localized(ja=f"{ja}の説明", en=f"About {en}"),
                default_subscribed=default,
                position=position,
            ),
        )


def in_topic(engine: Engine, clock: FrozenClock, template: str, topic: str | None) -> None:
    from ekiden.messaging.models import EmailTemplateChanges
    from ekiden.messaging.store import update_template

    with engine.begin() as conn:
        update_template(conn, clock, template, EmailTemplateChanges(topic=topic))


def choose(engine: Engine, clock: FrozenClock, contact_id: int, **choices: bool) -> list[str]:
    with engine.begin() as conn:
        return topics.choose_topics(conn, clock, contact_id, choices, source="api")


def send_to(
    engine: Engine, clock: FrozenClock, settings: Settings, template: str, prefix: str
) -> None:
    with engine.begin() as conn:
        sends.create_send(
            conn,
            clock,
            settings,
            SendIn.model_validate(
                {
                    "template": template,
                    "audience": {
                        "filter": {"field": "email", "op": "starts_with", "value": prefix}
                    },
                }
            ),
        )
    while sends.dispatch_due(engine, clock, settings):
        pass


def deliver(engine: Engine, clock: FrozenClock, settings: Settings) -> None:
    while deliver_due(engine, clock, settings):
        pass


def recipients(smtp: SmtpTestServer) -> list[str]:
    return sorted(r for item in smtp.received for r in item.recipients)


def reasons(engine: Engine) -> dict[int, tuple[str, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(email_messages.c.contact_id, email_messages.c.status, email_messages.c.reason)
        )
        return {r.contact_id: (r.status, r.reason) for r in rows}


# --- the API ---


NEWSLETTER = {
    "key": "newsletter",
    "name": {"ja": "ニュースレター", "en": "Newsletter"},
    "description": {"ja": "月に一度のお知らせ", "en": "Monthly news"},
}


def test_topics_crud_over_the_api(admin: TestClient) -> None:
    created = admin.post("/api/email-topics", json=NEWSLETTER)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"] == "newsletter"
    assert body["name"] == {"ja": "ニュースレター", "en": "Newsletter"}
    assert body["default_subscribed"] is True
    assert body["templates"] == []
    seminars = {"key": "seminars", "name": {"ja": "セミナー案内", "en": "Seminars"},
                "default_subscribed": False, "position": 0}  # fmt: skip
    assert admin.post("/api/email-topics", json=seminars).status_code == 201
    listed = admin.get("/api/email-topics").json()["items"]
    assert [t["key"] for t in listed] == ["newsletter", "seminars"]  # position, then key
    changed = admin.patch(
        "/api/email-topics/newsletter", json={"position": 5, "default_subscribed": False}
    )
    assert changed.status_code == 200
    assert changed.json()["default_subscribed"] is False
    assert [t["key"] for t in admin.get("/api/email-topics").json()["items"]] == [
        "seminars",
        "newsletter",
    ]
    assert admin.get("/api/email-topics/newsletter").json()["position"] == 5
    assert admin.delete("/api/email-topics/seminars").status_code == 204
    assert [t["key"] for t in admin.get("/api/email-topics").json()["items"]] == ["newsletter"]
    archived = admin.get("/api/email-topics", params={"archived": "true"}).json()["items"]
    assert [t["key"] for t in archived] == ["seminars"]


def test_topic_api_refuses_bad_input_and_changes_nothing(
    admin: TestClient, stored: Callable[[], Any]
) -> None:
    assert admin.post("/api/email-topics", json=NEWSLETTER).status_code == 201
    before = stored()
    duplicate = admin.post("/api/email-topics", json=NEWSLETTER)
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "topic_exists"
    bad_key = admin.post("/api/email-topics", json={**NEWSLETTER, "key": "News Letter"})
    assert bad_key.status_code == 422
    no_english = admin.post(
        "/api/email-topics", json={"key": "x", "name": {"ja": "エックス", "en": " "}}
    )
    assert no_english.status_code == 422
    assert "en name" in no_english.text
    other_locale = admin.post(
        "/api/email-topics", json={"key": "x", "name": {"ja": "a", "en": "b", "fr": "c"}}
    )
    assert other_locale.status_code == 422
    missing = admin.get("/api/email-topics/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "topic_not_found"
    assert admin.patch("/api/email-topics/nothing", json={"position": 1}).status_code == 404
    assert admin.patch("/api/email-topics/newsletter", json={"position": None}).status_code == 422
    assert admin.delete("/api/email-topics/nothing").status_code == 404
    assert stored() == before


def test_templates_belong_to_a_topic(admin: TestClient, stored: Callable[[], Any]) -> None:
    admin.post("/api/email-topics", json=NEWSLETTER)
    template = {"key": "monthly", "name": "月刊", "subject": "今月のお知らせ", "html": "<p>x</p>"}
    created = admin.post("/api/emails", json={**template, "topic": "newsletter"})
    assert created.status_code == 201, created.text
    assert created.json()["topic"] == "newsletter"
    assert admin.get("/api/emails/monthly").json()["topic"] == "newsletter"
    assert admin.get("/api/emails").json()["items"][0]["topic"] == "newsletter"
    assert admin.get("/api/email-topics/newsletter").json()["templates"] == ["monthly"]
    in_use = admin.delete("/api/email-topics/newsletter")
    assert in_use.status_code == 409
    assert in_use.json()["error"]["code"] == "topic_in_use"
    assert in_use.json()["error"]["details"]["templates"] == ["monthly"]
    # a topic change is no new version of the content
    moved = admin.patch("/api/emails/monthly", json={"topic": None})
    assert moved.json()["topic"] is None
    assert moved.json()["version"] == 1
    assert admin.delete("/api/email-topics/newsletter").status_code == 204
    before = stored()
    archived = admin.patch("/api/emails/monthly", json={"topic": "newsletter"})
    assert archived.status_code == 422
    assert archived.json()["error"]["code"] == "unknown_topic"
    unknown = admin.post("/api/emails", json={**template, "key": "other", "topic": "nothing"})
    assert unknown.status_code == 422
    assert "'nothing'" in unknown.json()["error"]["message"]
    transactional = admin.post(
        "/api/emails",
        json={**template, "key": "doc", "category": "transactional", "topic": "newsletter"},
    )
    assert transactional.status_code == 422
    assert stored() == before


def test_transactional_template_cannot_keep_a_topic(admin: TestClient) -> None:
    admin.post("/api/email-topics", json=NEWSLETTER)
    template = {"key": "monthly", "name": "月刊", "subject": "s", "html": "<p>x</p>"}
    admin.post("/api/emails", json={**template, "topic": "newsletter"})
    answer = admin.patch("/api/emails/monthly", json={"category": "transactional"})
    assert answer.status_code == 422
    assert "transactional" in answer.json()["error"]["message"]
    assert admin.get("/api/emails/monthly").json()["category"] == "marketing"
    both = admin.patch("/api/emails/monthly", json={"category": "transactional", "topic": None})
    assert both.status_code == 200
    assert both.json()["topic"] is None


def test_contact_topic_choices_over_the_api_with_evidence(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    admin.post("/api/email-topics", json=NEWSLETTER)
    admin.post(
        "/api/email-topics",
        json={"key": "seminars", "name": {"ja": "セミナー", "en": "Seminars"},
              "default_subscribed": False},
    )  # fmt: skip
    [contact] = add_contacts(engine, clock, 1)
    states = admin.get(f"/api/contacts/{contact}/email-topics").json()["items"]
    assert [(s["topic"], s["subscribed"], s["chosen"]) for s in states] == [
        ("newsletter", True, False),
        ("seminars", False, False),
    ]
    clock.advance(timedelta(minutes=5))
    answer = admin.put(
        f"/api/contacts/{contact}/email-topics/newsletter",
        json={"subscribed": False, "source_ref": "ticket-42"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["subscribed"] is False
    assert answer.json()["chosen"] is True
    assert answer.json()["source"] == "api"
    assert answer.json()["source_ref"].endswith(":ticket-42")
    assert answer.json()["changed_at"].startswith(clock.now().isoformat()[:19])
    again = admin.put(
        f"/api/contacts/{contact}/email-topics/newsletter", json={"subscribed": False}
    )
    assert again.status_code == 200
    with engine.connect() as conn:
        changes = conn.execute(select(events).where(events.c.type == "email_topic_changed")).all()
    assert len(changes) == 1  # repeating a choice records nothing
    assert changes[0].contact_id == contact
    assert changes[0].properties == {"topic": "newsletter", "subscribed": False, "method": "api"}
    timeline = admin.get(f"/api/contacts/{contact}/events").json()["items"]
    assert "email_topic_changed" in [e["type"] for e in timeline]
    unknown = admin.put(f"/api/contacts/{contact}/email-topics/nothing", json={"subscribed": True})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "topic_not_found"
    assert admin.get("/api/contacts/99999/email-topics").status_code == 404
    bad = admin.put(f"/api/contacts/{contact}/email-topics/newsletter", json={"subscribed": "x"})
    assert bad.status_code == 422


def test_unknown_topic_in_a_choice_stores_nothing(
    engine: Engine, clock: FrozenClock, stored: Callable[[], Any]
) -> None:
    make_topic(engine, clock, "newsletter")
    [contact] = add_contacts(engine, clock, 1)
    before = stored()
    with pytest.raises(Invalid, match="unknown email topic 'nope'") as caught:
        choose(engine, clock, contact, newsletter=False, nope=True)
    assert caught.value.code == "unknown_topic"
    assert stored() == before


# --- who may receive what ---


def test_may_send_and_mailable_agree_on_topics(engine: Engine, clock: FrozenClock) -> None:
    make_topic(engine, clock, "newsletter")
    make_topic(engine, clock, "seminars", default=False)
    add_template(engine, clock, "monthly")
    add_template(engine, clock, "invite")
    add_template(engine, clock, "plain")
    add_template(engine, clock, "doc", category="transactional")
    in_topic(engine, clock, "monthly", "newsletter")
    in_topic(engine, clock, "invite", "seminars")
    out, keen, quiet = add_contacts(engine, clock, 3)
    choose(engine, clock, out, newsletter=False)
    choose(engine, clock, keen, seminars=True)
    expected = {
        ("monthly", out): TOPIC_UNSUBSCRIBED,
        ("monthly", keen): None,
        ("monthly", quiet): None,
        ("invite", out): TOPIC_UNSUBSCRIBED,  # off by default, never chosen
        ("invite", keen): None,
        ("invite", quiet): TOPIC_UNSUBSCRIBED,
        ("plain", out): None,
        ("plain", quiet): None,
    }
    with engine.connect() as conn:
        for (template, contact), reason in expected.items():
            assert may_send(conn, contact, "marketing", template=template) == reason
            assert may_send_many(conn, [contact], "marketing", template=template) == {
                contact: reason
            }
            found = conn.execute(
                select(contacts.c.id).where(
                    contacts.c.id == contact, mailable("marketing", template=template)
                )
            ).first()
            assert (found is not None) == (reason is None), (template, contact)
            # transactional mail ignores topics; so does a call without a template
            assert may_send(conn, contact, "transactional", template=template) is None
            assert may_send(conn, contact, "marketing") is None


def test_a_send_skips_contacts_out_of_its_topic(
    engine: Engine, clock: FrozenClock, settings: Settings, smtp: SmtpTestServer
) -> None:
    make_topic(engine, clock, "newsletter")
    add_template(engine, clock, "monthly")
    add_template(engine, clock, "plain")
    add_template(engine, clock, "doc", category="transactional")
    in_topic(engine, clock, "monthly", "newsletter")
    a, b, c = add_contacts(engine, clock, 3, prefix="t")
    choose(engine, clock, b, newsletter=False)
    send_to(engine, clock, settings, "monthly", "t")
    deliver(engine, clock, settings)
    assert recipients(smtp) == ["t0@example.jp", "t2@example.jp"]
    assert reasons(engine)[b] == ("skipped", TOPIC_UNSUBSCRIBED)
    # other mail still reaches b: an untopiced template, and transactional mail
    with engine.begin() as conn:
        send_email(conn, clock, settings, template="plain", contact_id=b, key="j:1",
                   category="marketing")  # fmt: skip
        send_email(conn, clock, settings, template="doc", contact_id=b, key="j:2",
                   category="transactional")  # fmt: skip
        send_email(conn, clock, settings, template="monthly", contact_id=b, key="j:3",
                   category="marketing")  # fmt: skip
    deliver(engine, clock, settings)
    assert recipients(smtp).count("t1@example.jp") == 2
    with engine.connect() as conn:
        third = conn.execute(select(email_messages).where(email_messages.c.key == "j:3")).one()
    assert (third.status, third.reason) == ("skipped", TOPIC_UNSUBSCRIBED)
    del a, c


def test_opting_out_of_a_topic_stops_messages_already_queued(
    engine: Engine, clock: FrozenClock, settings: Settings, smtp: SmtpTestServer
) -> None:
    make_topic(engine, clock, "newsletter")
    add_template(engine, clock, "monthly")
    in_topic(engine, clock, "monthly", "newsletter")
    ids = add_contacts(engine, clock, 4, prefix="q")
    send_to(engine, clock, settings, "monthly", "q")
    assert {s for s, _ in reasons(engine).values()} == {"queued"}
    choose(engine, clock, ids[1], newsletter=False)  # after queueing, before delivery
    deliver(engine, clock, settings)
    assert recipients(smtp) == ["q0@example.jp", "q2@example.jp", "q3@example.jp"]
    assert reasons(engine)[ids[1]] == ("skipped", TOPIC_UNSUBSCRIBED)
    assert len(smtp.count_by_message_id()) == 3


def test_a_topic_off_by_default_reaches_only_those_who_opted_in(
    engine: Engine, clock: FrozenClock, settings: Settings, smtp: SmtpTestServer
) -> None:
    make_topic(engine, clock, "seminars", default=False)
    add_template(engine, clock, "invite")
    in_topic(engine, clock, "invite", "seminars")
    ids = add_contacts(engine, clock, 3, prefix="s")
    choose(engine, clock, ids[2], seminars=True)
    send_to(engine, clock, settings, "invite", "s")
    deliver(engine, clock, settings)
    assert recipients(smtp) == ["s2@example.jp"]
    [message] = smtp.parsed()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_merge_keeps_the_most_restrictive_topic_choice(
    engine: Engine, clock: FrozenClock
) -> None:
    make_topic(engine, clock, "newsletter")
    make_topic(engine, clock, "seminars", default=False)
    make_topic(engine, clock, "products")
    winner, loser = add_contacts(engine, clock, 2)
    choose(engine, clock, winner, seminars=True, products=False)
    choose(engine, clock, loser, newsletter=False, products=True)
    with engine.begin() as conn:
        result = merge_contacts(conn, clock, winner_id=winner, loser_id=loser, merged_by="test")
    assert result.moved["email_topic_choices"] == 1
    with engine.connect() as conn:
        states = {t.topic: t.subscribed for t in topics.contact_topics(conn, winner)}
        left = conn.execute(
            select(func.count())
            .select_from(email_topic_choices)
            .where(email_topic_choices.c.contact_id == loser)
        ).scalar_one()
    assert states == {"newsletter": False, "seminars": True, "products": False}
    assert left == 0


# --- the preference page, reached from a delivered email ---


@pytest.fixture
def delivered(
    engine: Engine, clock: FrozenClock, settings: Settings, smtp: SmtpTestServer
) -> dict[str, Any]:
    """A marketing email in the "newsletter" topic delivered to a consenting contact; its
    preference page path and the contact's id."""
    make_topic(engine, clock, "newsletter", position=1)
    make_topic(engine, clock, "seminars", default=False, position=2)
    make_topic(engine, clock, "products", position=3)
    add_template(engine, clock, "monthly")
    in_topic(engine, clock, "monthly", "newsletter")
    [contact] = add_contacts(engine, clock, 1, prefix="hanako")
    send_to(engine, clock, settings, "monthly", "hanako")
    deliver(engine, clock, settings)
    [message] = smtp.parsed()
    [unsubscribe_url] = re.findall(r"<(http[^>]+/u/[^>]+)>", str(message["List-Unsubscribe"]))
    path = urlsplit(unsubscribe_url).path
    html = message.get_body(("html",))
    assert html is not None
    assert f"{path}/preferences" in html.get_content()  # every marketing email links it
    return {"path": path + "/preferences", "contact": contact}


def form_of(page: str) -> dict[str, Any]:
    """What a browser would post from the page as it is shown."""
    [csrf] = re.findall(r'name="csrf" value="([^"]+)"', page)
    shown = re.findall(r'name="shown" value="([^"]+)"', page)
    ticked = re.findall(r'name="topic" value="([^"]+)" checked', page)
    return {"csrf": csrf, "shown": shown, "topic": ticked, "choice": "stay"}


def state(engine: Engine, contact: int) -> dict[str, bool]:
    with engine.connect() as conn:
        return {t.topic: t.subscribed for t in topics.contact_topics(conn, contact)}


def test_preference_page_shows_topics_and_a_get_changes_nothing(
    browser: TestClient, delivered: dict[str, Any], stored: Callable[[], Any]
) -> None:
    before = stored()
    for _ in range(3):  # a security gateway, then the person
        page = browser.get(delivered["path"])
        assert page.status_code == 200
    assert stored() == before
    assert '<html lang="ja">' in page.text
    assert page.text.index("ニュースレター") < page.text.index("セミナー案内")
    assert re.search(r'name="topic" value="newsletter" checked', page.text)
    assert re.search(r'name="topic" value="seminars">', page.text)  # off by default
    assert re.search(r'name="topic" value="products" checked', page.text)
    assert "h***@example.jp" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    english = browser.get(delivered["path"], params={"lang": "en"})
    assert '<html lang="en">' in english.text
    assert "Seminar invitations" in english.text
    assert "About Seminar invitations" in english.text
    assert "Choose the email you want to receive" in english.text


def test_preference_page_saves_topic_choices_with_evidence(
    browser: TestClient, engine: Engine, clock: FrozenClock, delivered: dict[str, Any]
) -> None:
    form = form_of(browser.get(delivered["path"]).text)
    form["topic"] = ["seminars", "products"]  # newsletter off, seminars on
    clock.advance(timedelta(minutes=3))
    saved = browser.post(delivered["path"], data=form)
    assert saved.status_code == 200, saved.text
    assert "メール配信設定を保存しました。" in saved.text
    assert "ニュースレター</span>: 受け取らない" in saved.text
    contact = delivered["contact"]
    assert state(engine, contact) == {"newsletter": False, "seminars": True, "products": True}
    with engine.connect() as conn:
        rows = {
            r.topic_id: r
            for r in conn.execute(
                select(email_topic_choices).where(email_topic_choices.c.contact_id == contact)
            )
        }
        changes = conn.execute(
            select(events).where(events.c.type == "email_topic_changed").order_by(events.c.id)
        ).all()
        row = conn.execute(select(contacts).where(contacts.c.id == contact)).one()
    assert len(rows) == 2  # products did not change: nothing recorded for it
    evidence = next(r for r in rows.values() if not r.subscribed)
    assert evidence.source == "preferences"
    assert evidence.source_ref.startswith("email-preferences:monthly:")
    assert evidence.text_shown == "ニュースレター — ニュースレターの説明"
    assert evidence.user_agent == BROWSER
    assert evidence.changed_at == clock.now()
    assert [(e.properties["topic"], e.properties["subscribed"]) for e in changes] == [
        ("newsletter", False),
        ("seminars", True),
    ]
    assert changes[0].properties["email"] == "monthly"
    assert changes[0].properties["method"] == "preferences"
    assert changes[0].source == "email"
    assert row.unsubscribed_at is None  # a topic choice is no unsubscribe
    # the page shows the new state; saving it unchanged records nothing more
    again = form_of(browser.get(delivered["path"]).text)
    assert sorted(again["topic"]) == ["products", "seminars"]
    assert browser.post(delivered["path"], data=again).status_code == 200
    with engine.connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(events).where(events.c.type == "email_topic_changed")
        ).scalar_one()
    assert count == 2


def test_preference_page_unsubscribes_from_all_and_back(
    browser: TestClient, engine: Engine, clock: FrozenClock, delivered: dict[str, Any]
) -> None:
    contact = delivered["contact"]
    form = form_of(browser.get(delivered["path"]).text) | {"choice": "unsubscribe"}
    answer = browser.post(delivered["path"], data=form)
    assert answer.status_code == 200
    assert "配信停止を受け付けました" in answer.text
    with engine.connect() as conn:
        assert may_send(conn, contact, "marketing", template="monthly") == "unsubscribed"
    page = browser.get(delivered["path"]).text
    assert re.search(r'value="unsubscribe" checked', page)
    clock.advance(timedelta(days=1))
    form = form_of(page) | {"choice": "stay", "topic": ["products"]}
    assert browser.post(delivered["path"], data=form).status_code == 200
    with engine.connect() as conn:
        assert may_send(conn, contact, "marketing") is None
        assert may_send(conn, contact, "marketing", template="monthly") == TOPIC_UNSUBSCRIBED
    assert state(engine, contact) == {"newsletter": False, "seminars": False, "products": True}


def test_preference_page_refuses_bad_posts_and_stores_nothing(
    browser: TestClient, engine: Engine, clock: FrozenClock, delivered: dict[str, Any],
    stored: Callable[[], Any],
) -> None:  # fmt: skip
    path = delivered["path"]
    good = form_of(browser.get(path).text)
    before = stored()
    unknown = browser.post(path, data=good | {"topic": ["newsletter", "nothing"]})
    assert unknown.status_code == 400
    assert "nothing" in unknown.text
    assert "Traceback" not in unknown.text
    shown_unknown = browser.post(path, data=good | {"shown": ["newsletter", "gone"]})
    assert shown_unknown.status_code == 400
    no_token = browser.post(path, data={k: v for k, v in good.items() if k != "csrf"})
    assert no_token.status_code == 400
    assert "有効期限" in no_token.text
    assert 'name="csrf"' in no_token.text  # the page again, with a fresh token
    forged = browser.post(path, data=good | {"csrf": good["csrf"][:-2] + "AA"})
    assert forged.status_code == 400
    other_page = re.sub(r"/u/[^/]+/", "/u/x/", path)
    assert browser.post(other_page, data=good).status_code == 404
    cross_site = browser.post(path, data=good, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    no_choice = browser.post(path, data={k: v for k, v in good.items() if k != "choice"})
    assert no_choice.status_code == 400
    clock.advance(timedelta(days=2))  # the page was left open too long
    expired = browser.post(path, data=good)
    assert expired.status_code == 400
    assert "有効期限" in expired.text
    assert stored() == before


def test_bad_preference_tokens_get_a_plain_404(
    browser: TestClient, delivered: dict[str, Any], stored: Callable[[], Any]
) -> None:
    path = delivered["path"]
    token = path.split("/")[2]
    tampered = token[:-3] + ("xyz" if not token.endswith("xyz") else "abc")
    before = stored()
    for bad in (f"/u/{tampered}/preferences", "/u/nothing/preferences", "/u/a.b/preferences"):
        for answer in (browser.get(bad), browser.post(bad, data={"choice": "stay"})):
            assert answer.status_code == 404
            assert answer.text == "Not Found"
    assert stored() == before


def test_preference_page_of_a_merged_contact_shows_the_winner(
    browser: TestClient, engine: Engine, clock: FrozenClock, delivered: dict[str, Any]
) -> None:
    [winner] = add_contacts(engine, clock, 1, prefix="winner")
    choose(engine, clock, winner, products=False)
    with engine.begin() as conn:
        merge_contacts(
            conn, clock, winner_id=winner, loser_id=delivered["contact"], merged_by="test"
        )
    page = browser.get(delivered["path"]).text
    assert re.search(r'name="topic" value="products">', page)
    form = form_of(page) | {"topic": []}
    assert browser.post(delivered["path"], data=form).status_code == 200
    assert state(engine, winner) == {"newsletter": False, "seminars": False, "products": False}


# --- the CLI ---


def test_topics_from_the_command_line(
    engine: Engine, clock: FrozenClock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COLUMNS", "200")  # room for the whole table
    runner = CliRunner()
    add_template(engine, clock, "monthly")
    [contact] = add_contacts(engine, clock, 1)

    def run(*args: str) -> Any:
        return runner.invoke(cli_app, ["emails", "topics", *args])

    made = run("create", "newsletter", "--name-ja", "ニュースレター", "--name-en", "Newsletter")
    assert made.exit_code == 0, made.output
    made = run("create", "seminars", "--name-ja", "セミナー案内", "--name-en", "Seminars",
               "--default-unsubscribed", "--position", "2")  # fmt: skip
    assert made.exit_code == 0, made.output
    assert run("update", "newsletter", "--name-en", "News").exit_code == 0
    assert run("assign", "monthly", "newsletter").exit_code == 0
    listed = run("list")
    assert listed.exit_code == 0
    assert "ニュースレター" in listed.output
    assert "News" in listed.output
    assert "monthly" in listed.output
    chose = run("choose", str(contact), "newsletter", "--unsubscribed", "--reference", "tel-7")
    assert chose.exit_code == 0, chose.output
    with engine.connect() as conn:
        row = conn.execute(select(email_topic_choices)).one()
        assert may_send(conn, contact, "marketing", template="monthly") == TOPIC_UNSUBSCRIBED
        template_topic = topics.template_topics(
            conn, conn.execute(select(email_templates.c.id)).scalars()
        )
    assert (row.subscribed, row.source, row.source_ref) == (False, "cli", "tel-7")
    assert list(template_topic.values()) == ["newsletter"]
    in_use = run("archive", "newsletter")
    assert in_use.exit_code == 1
    assert "used by the templates monthly" in in_use.output
    unknown = run("choose", str(contact), "nothing", "--subscribed")
    assert unknown.exit_code == 1
    assert "unknown email topic 'nothing'" in unknown.output
    bad_key = run("create", "Bad Key", "--name-ja", "x", "--name-en", "x")
    assert bad_key.exit_code == 1
    assert "key" in bad_key.output
    assert run("assign", "monthly", "-").exit_code == 0
    assert run("archive", "newsletter").exit_code == 0
    assert "newsletter" not in run("list").output


# --- property: nobody out of consent, unsubscribed, suppressed or out of the topic ---


PEOPLE = st.lists(
    st.fixed_dictionaries(
        {
            # weighted towards people who may get mail, so that topic choices decide often
            "consent": st.sampled_from(["granted", "granted", "none", "withdrawn"]),
            "unsubscribed": st.sampled_from([False, False, True]),
            "suppressed": st.sampled_from([False, False, True]),
            "choice": st.sampled_from([None, True, False]),  # their topic choice, if any
            "late_choice": st.sampled_from([None, True, False]),  # after queueing
            "late_unsubscribe": st.sampled_from([False, False, True]),
        }
    ),
    min_size=1,
    max_size=6,
)
_examples = itertools.count()


def _person(**changes: Any) -> dict[str, Any]:
    return {"consent": "granted", "unsubscribed": False, "suppressed": False, "choice": None,
            "late_choice": None, "late_unsubscribe": False, **changes}  # fmt: skip


@hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(people=PEOPLE, default=st.booleans(), topical=st.sampled_from([True, True, False]))
@example(  # the cases that matter most, always tried first
    people=[
        _person(),
        _person(late_choice=False),  # opted out after queueing
        _person(choice=False, late_choice=True),  # skipped when queued; opting in is too late
        _person(choice=False),
        _person(consent="none", choice=True),
        _person(late_unsubscribe=True, choice=True),
    ],
    default=True,
    topical=True,
)
@example(people=[_person(), _person(choice=True), _person(late_choice=True)], default=False,
         topical=True)  # fmt: skip
def test_marketing_mail_reaches_only_contacts_subscribed_to_its_topic(
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    smtp: SmtpTestServer,
    people: list[dict[str, Any]],
    default: bool,
    topical: bool,
) -> None:
    n = next(_examples)
    make_topic(engine, clock, f"topic{n}", default=default)
    add_template(engine, clock, f"mail{n}")
    if topical:
        in_topic(engine, clock, f"mail{n}", f"topic{n}")
    prefix = f"x{n}p"
    ids = add_contacts(
        engine,
        clock,
        len(people),
        prefix=prefix,
        states=[
            {
                "email_consent": p["consent"],
                "unsubscribed_at": clock.now() if p["unsubscribed"] else None,
                "suppressed_at": clock.now() if p["suppressed"] else None,
                "suppression_reason": "manual" if p["suppressed"] else None,
            }
            for p in people
        ],
    )
    for contact, p in zip(ids, people, strict=True):
        if p["choice"] is not None:
            choose(engine, clock, contact, **{f"topic{n}": p["choice"]})
    # the audience query and may_send agree at queueing time
    with engine.connect() as conn:
        audience = set(
            conn.execute(
                select(contacts.c.id).where(
                    contacts.c.id.in_(ids), mailable("marketing", template=f"mail{n}")
                )
            ).scalars()
        )
        answers = may_send_many(conn, ids, "marketing", template=f"mail{n}")
    assert audience == {c for c, reason in answers.items() if reason is None}
    send_to(engine, clock, settings, f"mail{n}", prefix)
    with engine.begin() as conn:
        for contact, p in zip(ids, people, strict=True):
            if p["late_choice"] is not None:
                topics.choose_topics(
                    conn, clock, contact, {f"topic{n}": p["late_choice"]}, source="api"
                )
            if p["late_unsubscribe"]:
                unsubscribe(conn, clock, contact)
    before = len(smtp.received)
    deliver(engine, clock, settings)
    clock.advance(timedelta(minutes=1))
    arrived = [r for item in smtp.received[before:] for r in item.recipients]
    for i, p in enumerate(people):
        subscribed_when_queued = default if p["choice"] is None else p["choice"]
        subscribed_at_delivery = (
            subscribed_when_queued if p["late_choice"] is None else p["late_choice"]
        )
        allowed = (
            p["consent"] == "granted"
            and not p["unsubscribed"]
            and not p["suppressed"]
            and not p["late_unsubscribe"]
            and (not topical or (subscribed_when_queued and subscribed_at_delivery))
        )
        assert arrived.count(f"{prefix}{i}@example.jp") == (1 if allowed else 0), (p, topical)
    assert len(arrived) == len(set(arrived))


def test_contact_rows_are_untouched_by_topic_choices(engine: Engine, clock: FrozenClock) -> None:
    """A topic choice is not consent or an unsubscribe: the contact's own flags stay."""
    make_topic(engine, clock, "newsletter")
    [contact] = add_contacts(engine, clock, 1)
    with engine.begin() as conn:
        conn.execute(
            update(contacts).where(contacts.c.id == contact).values(email_consent="granted")
        )
    choose(engine, clock, contact, newsletter=False)
    with engine.connect() as conn:
        row = conn.execute(select(contacts).where(contacts.c.id == contact)).one()
    assert (row.email_consent, row.unsubscribed_at) == ("granted", None)
