"""On-site messages (R15) in a real browser: a journey leaves "何かお困りのことはありませんか?"
for a contact; headless Chromium on the customer's site shows it on that contact's next visit,
and to nobody else. Closing it, following its link and showing it are events journeys can
wait on. Plus the public endpoint's answers to bad input.

Needs Debian's /usr/bin/chromium (see tests/test_snippet_browser.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

import test_snippet_browser
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.identity import link_anonymous_id
from ekiden.contacts.tags import tags_of
from ekiden.journeys import bundled
from ekiden.journeys.tables import journeys, onsite_messages
from ekiden.lifecycle.tables import sales_tasks
from ekiden.tracking.tables import events
from ekiden.worker import wait_until_idle
from test_journeys import journey_worker, person, start, state_of, submit
from test_snippet_browser import USER_AGENT, CustomerSite, wait_for

# the snippet tests' fixtures: headless Chromium and the customer's website
browser = test_snippet_browser.browser
site = test_snippet_browser.site

R15 = "何かお困りのことはありませんか?"
HOSTILE = '<b>太字</b><img src=x onerror="window.pwned=1">'


def onsite_events(engine: Engine, kind: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(events.c.contact_id, events.c.properties, events.c.anonymous_id)
                .where(events.c.type == f"onsite_{kind}")
                .order_by(events.c.id)
            )
        )


@pytest.fixture
def visitor(browser: Any) -> Iterator[Any]:
    """A new browser (its own cookies) in Japanese: a function returning a fresh page."""
    contexts: list[Any] = []

    def new_page() -> Any:
        context = browser.new_context(user_agent=USER_AGENT, locale="ja-JP")
        contexts.append(context)
        return context.new_page()

    yield new_page
    for context in contexts:
        context.close()


def identify(page: Any, site: CustomerSite, engine: Engine, email: str) -> int:
    """Visit the site and sign up with ``email``: the snippet links the browser to them."""
    page.goto(f"{site.url}/pricing")
    page.fill("input[name=email]", email)
    page.click("#signup button")
    page.wait_for_url(f"{site.url}/thanks")

    def contact() -> int | None:
        from ekiden.contacts.tables import contacts

        with engine.connect() as conn:
            found: int | None = conn.execute(
                select(contacts.c.id).where(contacts.c.email == email)
            ).scalar_one_or_none()
        return found

    return wait_for(contact, f"the contact {email}")


def visit(page: Any, url: str) -> list[dict[str, Any]]:
    """Load ``url`` and return what the on-site endpoint answered for this browser."""
    # only this page's request: an earlier page's late answer (say, the thank-you page the
    # sign-up landed on) is left alone, since its body is gone once we navigate away
    with page.expect_response(
        lambda r: r.url.endswith("/t/onsite") and r.frame.url == url
    ) as answer:
        page.goto(url)
    found: list[dict[str, Any]] = answer.value.json()["messages"]
    return found


def boxes(page: Any) -> Any:
    return page.locator("[data-ekiden-onsite] section")


def test_r15_message_appears_on_the_contacts_next_visit_and_for_nobody_else(
    visitor: Any,
    site: CustomerSite,
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin: TestClient,
) -> None:
    with engine.begin() as conn:
        bundled.load_examples(conn, clock, settings.zone)
    assert admin.post("/api/journeys/missed-call/activate").status_code == 200
    worker = journey_worker(engine, clock, settings)

    missed_page, reached_page, stranger_page = visitor(), visitor(), visitor()
    missed = identify(missed_page, site, engine, "missed@example.jp")
    reached = identify(reached_page, site, engine, "reached@example.jp")
    for contact in (missed, reached):
        submit(engine, clock, contact, "documents")
    wait_until_idle(worker)
    clock.advance(timedelta(days=1))
    with engine.connect() as conn:
        task_of = dict(conn.execute(select(sales_tasks.c.contact_id, sales_tasks.c.id)).all())
    # sales close the call tasks: one call did not connect, the other did
    for contact, outcome in ((missed, "不在"), (reached, "話せた")):
        closed = admin.patch(
            f"/api/tasks/{task_of[contact]}", json={"status": "done", "outcome": outcome}
        )
        assert closed.status_code == 200, closed.text
    wait_until_idle(worker)
    assert state_of(engine, missed) == ("onsite", "completed")

    # the next visit of the contact whose call did not connect
    [shown] = visit(missed_page, f"{site.url}/landing")
    assert shown["message"] == R15
    box = boxes(missed_page)
    box.wait_for()
    assert box.count() == 1
    assert box.locator("p").inner_text() == R15
    assert box.locator("h2").inner_text() == "お問い合わせ窓口"
    assert box.get_attribute("role") == "region"
    close = box.locator("button")
    assert close.get_attribute("aria-label") == "閉じる"  # the page's visitor reads Japanese
    [event] = wait_for(lambda: onsite_events(engine, "shown"), "the shown event")
    assert event.contact_id == missed
    assert event.properties["journey"] == "missed-call"
    assert event.anonymous_id == missed_page.evaluate("ekiden.anonymousId()")

    # nobody else sees it: the reached contact, and an anonymous stranger
    assert visit(reached_page, f"{site.url}/landing") == []
    assert visit(stranger_page, f"{site.url}/landing") == []
    assert visit(stranger_page, f"{site.url}/thanks") == []
    for page in (reached_page, stranger_page):
        page.wait_for_timeout(200)
        assert boxes(page).count() == 0

    # closed with the keyboard-reachable button: an event, and it is gone
    close.focus()
    missed_page.keyboard.press("Enter")
    wait_for(lambda: boxes(missed_page).count() == 0, "the message to close")
    [dismissed] = wait_for(lambda: onsite_events(engine, "dismissed"), "the dismissed event")
    assert (dismissed.contact_id, dismissed.properties["message_id"]) == (
        missed,
        shown["id"],
    )
    assert visit(missed_page, f"{site.url}/thanks") == []  # shown once
    assert admin.get(f"/api/contacts/{missed}/onsite-messages").json()["items"] == []


def test_until_dismissed_link_click_and_escaped_text_wake_a_waiting_journey(
    visitor: Any,
    site: CustomerSite,
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin: TestClient,
) -> None:
    start(
        admin,
        {
            "key": "cta",
            "name": "cta",
            "entry": {"triggers": [{"manual": True}]},
            "start": "msg",
            "nodes": [
                {"id": "msg", "type": "onsite_message", "title": HOSTILE, "message": HOSTILE,
                 "link": f"{site.url}/app", "link_text": "詳しく見る",
                 "show": "until_dismissed", "expires_in": "7d", "next": "wait"},
                {"id": "wait", "type": "wait_for", "timeout": "7d", "next": "clicked",
                 "event": {"event": "onsite_clicked", "where": [
                     {"property": "journey", "op": "eq", "value": "cta"}]}},
                {"id": "clicked", "type": "add_tag", "tag": "cta-clicked"},
            ],
        },
    )  # fmt: skip
    worker = journey_worker(engine, clock, settings)
    page = visitor()
    contact = identify(page, site, engine, "cta@example.jp")
    assert admin.post("/api/journeys/cta/enrolments", json={"contact_ids": [contact]}).is_success
    wait_until_idle(worker)
    assert state_of(engine, contact) == ("wait", "waiting")

    for path in ("/landing", "/thanks"):  # on every page until closed or followed
        [shown] = visit(page, f"{site.url}{path}")
        box = boxes(page)
        box.wait_for()
        # the marketer's text is text: no element made from it, no script run
        assert box.locator("p").inner_text() == HOSTILE
        assert box.locator("h2").inner_text() == HOSTILE
        assert box.locator("img, b").count() == 0
        assert page.evaluate("window.pwned") is None
    assert len(onsite_events(engine, "shown")) == 2
    [listed] = admin.get(f"/api/contacts/{contact}/onsite-messages").json()["items"]
    assert (listed["show"], listed["shown_count"], listed["clicked_at"]) == (
        "until_dismissed", 2, None,
    )  # fmt: skip
    assert listed["shown_at"] is not None

    box.locator("a").click()
    page.wait_for_url(f"{site.url}/app")
    [clicked] = wait_for(lambda: onsite_events(engine, "clicked"), "the clicked event")
    assert (clicked.contact_id, clicked.properties["message_id"]) == (contact, shown["id"])
    wait_until_idle(worker)  # the click wakes the journey without the clock moving
    assert state_of(engine, contact) == ("clicked", "completed")
    with engine.connect() as conn:
        assert tags_of(conn, contact) == ["cta-clicked"]
    assert visit(page, f"{site.url}/landing") == []  # followed: no longer shown


# --- the public endpoint's answers to bad input (no browser needed) ----------------------------

AID = "0b5c7f2e-6f0d-4a8e-9a51-3c1d2b4e5f60"
OTHER_AID = "9a9a9a9a-6f0d-4a8e-9a51-3c1d2b4e5f60"


@pytest.fixture
def message(engine: Engine, clock: FrozenClock, admin: TestClient) -> dict[str, int]:
    """A contact with a stored message and a linked browser (AID); another contact with
    another browser (OTHER_AID) and no message."""
    start(
        admin,
        {
            "key": "note",
            "name": "note",
            "entry": {"triggers": [{"manual": True}]},
            "start": "msg",
            "nodes": [{"id": "msg", "type": "onsite_message", "message": R15}],
        },
    )
    owner = person(engine, clock, "owner@example.jp")
    other = person(engine, clock, "other@example.jp")
    with engine.begin() as conn:
        link_anonymous_id(conn, clock, AID, owner)
        link_anonymous_id(conn, clock, OTHER_AID, other)
        journey_id = conn.execute(select(journeys.c.id)).scalar_one()
        conn.execute(
            onsite_messages.insert().values(
                key="k1",
                contact_id=owner,
                journey_id=journey_id,
                message=R15,
                created_at=clock.now(),
            )
        )
        found = conn.execute(select(onsite_messages.c.id)).scalar_one()
    return {"owner": owner, "other": other, "message": found}


def ask(client: TestClient, body: Any, path: str = "/t/onsite") -> Any:
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, content=text, headers={"Content-Type": "text/plain"})


def test_the_endpoint_refuses_bad_keys_and_ids_and_tells_nothing_about_others(
    client: TestClient, ingest_key: str, admin_key: str, message: dict[str, int]
) -> None:
    answer = ask(client, {"writeKey": "ek_in_nope", "anonymousId": AID})
    assert answer.status_code == 401
    assert "writeKey" in answer.json()["error"]["message"]
    assert answer.headers["access-control-allow-origin"] == "*"
    answer = ask(client, {"writeKey": admin_key, "anonymousId": AID})
    assert answer.status_code == 403
    assert "ingest key" in answer.text
    answer = ask(client, {"anonymousId": AID})
    assert answer.status_code == 401
    answer = ask(client, {"writeKey": ingest_key, "anonymousId": "x"})
    assert answer.status_code == 422
    assert "anonymousId" in answer.text
    assert ask(client, "not json").status_code == 400
    assert ask(client, "[1]").status_code == 400
    assert ask(client, "x" * 5000).status_code == 413

    # the other contact's browser and an unknown one: the same empty answer
    for aid in (OTHER_AID, "ffffffff-0000-4000-8000-000000000000"):
        answer = ask(client, {"writeKey": ingest_key, "anonymousId": aid})
        assert answer.status_code == 200
        assert answer.json()["messages"] == []
    # and neither can act on the owner's message (nor on one not shown yet)
    action = {"writeKey": ingest_key, "anonymousId": OTHER_AID, "action": "dismissed"}
    path = f"/t/onsite/{message['message']}"
    assert ask(client, action, path).status_code == 404
    assert ask(client, {**action, "anonymousId": AID}, path).status_code == 404  # not shown
    # a machine's request does not use up the person's message
    answer = client.post(
        "/t/onsite",
        content=json.dumps({"writeKey": ingest_key, "anonymousId": AID}),
        headers={"Content-Type": "text/plain", "User-Agent": "Googlebot/2.1"},
    )
    assert answer.json()["messages"] == []

    [shown] = ask(client, {"writeKey": ingest_key, "anonymousId": AID}).json()["messages"]
    assert shown["message"] == R15
    assert ask(client, {"writeKey": ingest_key, "anonymousId": AID}).json()["messages"] == []
    assert ask(client, {**action, "anonymousId": AID, "action": "read"}, path).status_code == 422
    assert ask(client, {**action, "anonymousId": AID}, path).json()["recorded"] is True
    assert ask(client, {**action, "anonymousId": AID}, path).json()["recorded"] is False
    assert ask(client, {**action, "anonymousId": AID}, "/t/onsite/99999").status_code == 404


def test_requests_are_rate_limited_per_browser(client: TestClient, ingest_key: str) -> None:
    from ekiden.journeys.onsite import RATE_PER_BROWSER

    body = {"writeKey": ingest_key, "anonymousId": AID}
    codes = [ask(client, body).status_code for _ in range(RATE_PER_BROWSER + 1)]
    assert codes[:-1] == [200] * RATE_PER_BROWSER
    limited = ask(client, body)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "60"
    assert ask(client, {**body, "anonymousId": OTHER_AID}).status_code == 200  # others go on


def test_onsite_message_definitions_refuse_unsafe_links() -> None:
    from ekiden.errors import Invalid
    from ekiden.journeys.definition import parse_journey

    def journey(**fields: Any) -> dict[str, Any]:
        node = {"id": "msg", "type": "onsite_message", "message": R15, **fields}
        return {"key": "j", "name": "j", "entry": {"triggers": [{"manual": True}]},
                "start": "msg", "nodes": [node]}  # fmt: skip

    parse_journey(journey(link="https://www.example.jp/help", link_text="ヘルプ"))
    for bad, named in (
        ({"link": "javascript:alert(1)"}, "nodes[0] (msg).link"),
        ({"link_text": "ヘルプ"}, "link_text needs link"),
        ({"show": "always"}, "nodes[0] (msg).show"),
    ):
        with pytest.raises(Invalid, match=re.escape(named)):
            parse_journey(journey(**bad))
