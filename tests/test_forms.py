"""Public forms: the hosted page, the embed script and submissions with consent evidence."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from tests.conftest import LiveServer

from ekiden.clock import FrozenClock
from ekiden.contacts.customfields import CustomFieldDefinition, define_field
from ekiden.contacts.tables import consents, contacts, identities
from ekiden.forms.tables import forms
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events

XSS = '<script>alert("x")</script>'


def download_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "name": "Whitepaper 2026",
        "slug": "whitepaper",
        "kind": "download",
        "title": {"ja": "資料ダウンロード", "en": "Download the whitepaper"},
        "fields": [
            {
                "key": "email",
                "type": "email",
                "label": {"ja": "メールアドレス", "en": "Email"},
                "required": True,
            },
            {"key": "last_name", "label": {"ja": "姓", "en": "Last name"}, "required": True},
            {"key": "company", "label": {"ja": "会社名 " + XSS, "en": "Company"}},
            {
                "key": "custom.employees",
                "type": "select",
                "label": {"ja": "従業員数", "en": "Employees"},
                "options": ["1-49", "50-999", "1000+"],
            },
            {
                "key": "interest",
                "type": "checkbox",
                "label": {"ja": "関心", "en": "Interests"},
                "options": [
                    {"value": "ma", "label": {"ja": "MA", "en": "Marketing automation"}},
                    {"value": "sfa", "label": {"ja": "SFA", "en": "Sales force"}},
                ],
            },
            {
                "key": "comment",
                "type": "textarea",
                "label": {"ja": "ご質問", "en": "Questions"},
                "max_length": 50,
            },
        ],
        "consent": {
            "required": True,
            "text": {
                "ja": "メールでのご案内に同意します & <b>規約</b>",
                "en": "I agree to receive emails",
            },
        },
        "success": {
            "document_url": "https://cdn.example.jp/wp.pdf",
            "message": {"ja": "ありがとうございます", "en": "Thank you for downloading"},
        },
    }
    form.update(overrides)
    return form


@pytest.fixture
def form(admin: TestClient, engine: Engine, clock: FrozenClock) -> dict[str, Any]:
    with engine.begin() as conn:
        define_field(
            conn,
            clock,
            CustomFieldDefinition(
                key="employees",
                label="従業員数",
                type="choice",
                choices=["1-49", "50-999", "1000+"],
            ),
        )
    response = admin.post("/api/forms", json=download_form())
    assert response.status_code == 201, response.text
    del admin.headers["Authorization"]  # the visitor has no key
    return dict(response.json())


class HiddenInputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "input" and found.get("type") == "hidden" and found.get("name"):
            self.values[str(found["name"])] = found.get("value") or ""


def render(
    client: TestClient, clock: FrozenClock, url: str = "/f/whitepaper", **kwargs: Any
) -> dict[str, str]:
    """GET the hosted page and return its hidden inputs; time moves on as a person types."""
    page = client.get(url, **kwargs)
    assert page.status_code == 200
    parser = HiddenInputs()
    parser.feed(page.text)
    clock.advance(timedelta(seconds=20))
    return parser.values


def answers(**extra: Any) -> dict[str, Any]:
    return {
        "email": "  Hanako.Sato@Example.CO.JP ",
        "last_name": "佐藤",
        "company": "サンプル株式会社",
        "custom.employees": "50-999",
        "interest": ["ma", "sfa"],
        "consent": "on",
        **extra,
    }


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def stored_nothing(engine: Engine) -> bool:
    return all(count(engine, t) == 0 for t in (contacts, consents, events, identities))


def test_hosted_page_is_japanese_by_default_and_escapes_text(
    client: TestClient, form: dict[str, Any]
) -> None:
    page = client.get("/f/whitepaper")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="ja">' in page.text
    assert "資料ダウンロード" in page.text
    assert "メールアドレス" in page.text
    assert "必須" in page.text
    assert XSS not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
    assert "&amp; &lt;b&gt;規約&lt;/b&gt;" in page.text
    assert '<label for="f-1">' in page.text  # every input has its label
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert "https://" not in page.text.split("<main>")[0]  # no third-party assets


def test_hosted_page_speaks_english_when_asked(client: TestClient, form: dict[str, Any]) -> None:
    page = client.get("/f/whitepaper", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in page.text
    assert "Download the whitepaper" in page.text
    assert "I agree to receive emails" in page.text
    assert "Required" in page.text
    by_query = client.get("/f/whitepaper?lang=en", headers={"Accept-Language": "ja"})
    assert "Download the whitepaper" in by_query.text


def test_hosted_page_carries_utm_and_anonymous_id(client: TestClient, form: dict[str, Any]) -> None:
    client.cookies.set("ekiden_aid", "anon-cookie-1")
    page = client.get(
        f"/f/whitepaper?utm_source=news&utm_campaign={XSS}",
        headers={"Referer": "https://www.example.jp/lp"},
    )
    parser = HiddenInputs()
    parser.feed(page.text)
    assert parser.values["utm_source"] == "news"
    assert parser.values["utm_campaign"] == XSS  # escaped in the HTML, intact as a value
    assert parser.values["_aid"] == "anon-cookie-1"
    assert parser.values["_ref"] == "https://www.example.jp/lp"
    assert parser.values["_page"].startswith("http://testserver/f/whitepaper?utm_source=news")


def test_valid_submission_stores_contact_consent_event_and_joins_history(
    client: TestClient, form: dict[str, Any], engine: Engine, clock: FrozenClock
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
                    anonymous_id="anon-42",
                    path="/pricing",
                    message_id="pv-1",
                ),
                NewEvent(
                    type="page",
                    occurred_at=clock.now(),
                    source="browser",
                    anonymous_id="anon-42",
                    path="/cases",
                    message_id="pv-2",
                ),
            ],
        )
    hidden = render(client, clock, "/f/whitepaper?utm_source=seminar&utm_medium=email")
    hidden["_aid"] = "anon-42"
    response = client.post(
        "/f/whitepaper", data={**hidden, **answers()}, headers={"User-Agent": "TestBrowser/1.0"}
    )
    assert response.status_code == 200
    assert "ありがとうございます" in response.text
    assert 'href="https://cdn.example.jp/wp.pdf"' in response.text

    with engine.connect() as conn:
        contact = conn.execute(select(contacts)).mappings().one()
        assert contact["email"] == "Hanako.Sato@example.co.jp"
        assert (contact["last_name"], contact["company"]) == ("佐藤", "サンプル株式会社")
        assert contact["custom"] == {"employees": "50-999"}
        assert contact["email_consent"] == "granted"
        assert (contact["source_kind"], contact["source_ref"]) == ("form", "whitepaper")
        consent = conn.execute(select(consents)).mappings().one()
        assert consent["contact_id"] == contact["id"]
        assert (consent["status"], consent["source"], consent["source_ref"]) == (
            "granted",
            "form",
            "whitepaper",
        )
        assert consent["text_shown"] == "メールでのご案内に同意します & <b>規約</b>"
        assert consent["ip"] == "testclient"
        assert consent["user_agent"] == "TestBrowser/1.0"
        rows = conn.execute(select(events).order_by(events.c.id)).mappings().all()
    assert [r["contact_id"] for r in rows] == [contact["id"]] * 3  # earlier page views joined
    submitted = rows[2]
    assert (submitted["type"], submitted["source"], submitted["machine"]) == (
        "form_submitted",
        "form",
        False,
    )
    props = submitted["properties"]
    assert props["form"] == "whitepaper"
    assert props["form_kind"] == "download"
    assert props["answers"]["interest"] == ["ma", "sfa"]
    assert props["answers"]["email"] == "Hanako.Sato@example.co.jp"
    assert props["answers"]["comment"] is None
    assert (props["utm_source"], props["utm_medium"]) == ("seminar", "email")
    assert props["page_url"].endswith("/f/whitepaper?utm_source=seminar&utm_medium=email")


def test_second_submission_updates_the_same_contact(
    client: TestClient, form: dict[str, Any], engine: Engine, clock: FrozenClock
) -> None:
    client.post("/f/whitepaper", data={**render(client, clock), **answers()})
    again = {**answers(company="新会社"), "email": "Hanako.Sato@EXAMPLE.co.jp"}
    client.post("/f/whitepaper", data={**render(client, clock), **again})
    with engine.connect() as conn:
        assert conn.execute(select(contacts.c.company)).scalars().all() == ["新会社"]
    assert count(engine, events) == 2
    assert count(engine, consents) == 2


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"email": ""}, "email", "この項目は必須です。"),
        ({"email": "not-an-address"}, "email", "正しいメールアドレスを入力してください。"),
        ({"last_name": ""}, "last_name", "この項目は必須です。"),
        ({"consent": ""}, "consent", "送信するには同意のチェックを入れてください。"),
        ({"custom.employees": "5000"}, "custom.employees", "表示された選択肢から選んでください。"),
        ({"interest": ["ma", "crm"]}, "interest", "表示された選択肢から選んでください。"),
        ({"comment": "あ" * 51}, "comment", "50 文字以内で入力してください。"),
    ],
)
def test_invalid_submission_stores_nothing_and_shows_the_errors(
    client: TestClient,
    form: dict[str, Any],
    engine: Engine,
    clock: FrozenClock,
    change: dict[str, Any],
    field: str,
    message: str,
) -> None:
    data = {**render(client, clock), **answers(comment=XSS), **change}
    response = client.post("/f/whitepaper", data=data)
    assert response.status_code == 422
    assert message in response.text
    assert 'aria-invalid="true"' in response.text
    assert XSS not in response.text  # the visitor's own input comes back escaped
    if field != "comment":
        assert "サンプル株式会社" in response.text  # values kept
    assert stored_nothing(engine)

    as_json = client.post("/f/whitepaper", json=data, headers={"Accept-Language": "en"})
    assert as_json.status_code == 422
    error = as_json.json()["error"]
    assert error["code"] == "invalid_submission"
    assert set(error["details"]) == {field}
    assert as_json.headers["access-control-allow-origin"] == "*"
    assert stored_nothing(engine)


def test_all_errors_are_reported_at_once(
    client: TestClient, form: dict[str, Any], engine: Engine, clock: FrozenClock
) -> None:
    response = client.post("/f/whitepaper", json={"email": "x@", "last_name": "", "_lang": "en"})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert details == {
        "email": "Enter a valid email address.",
        "last_name": "This field is required.",
        "consent": "Please agree to continue.",
    }
    assert stored_nothing(engine)


def test_unknown_or_archived_form_is_404(
    client: TestClient, form: dict[str, Any], admin_key: str, engine: Engine, clock: FrozenClock
) -> None:
    assert client.get("/f/nothing").status_code == 404
    assert "フォームが見つかりません" in client.get("/f/nothing").text
    assert client.get("/f/nothing.js").status_code == 404
    hidden = render(client, clock)
    archived = client.post(
        "/api/forms/whitepaper/archive", headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert archived.status_code == 200
    assert client.get("/f/whitepaper").status_code == 404
    response = client.post("/f/whitepaper", data={**hidden, **answers()})
    assert response.status_code == 404
    assert client.post("/f/whitepaper", json=answers()).json()["error"]["code"] == "not_found"
    assert stored_nothing(engine)


def test_oversized_or_unreadable_body_stores_nothing(
    client: TestClient, form: dict[str, Any], engine: Engine, clock: FrozenClock
) -> None:
    big = client.post(
        "/f/whitepaper", data={**render(client, clock), **answers(comment="x" * 70_000)}
    )
    assert big.status_code == 413
    big_json = client.post("/f/whitepaper", json=answers(comment="x" * 70_000))
    assert big_json.json()["error"]["code"] == "too_large"
    broken = client.post(
        "/f/whitepaper", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    nested = client.post("/f/whitepaper", json={"email": {"a": 1}})
    assert nested.status_code == 400
    odd = client.post("/f/whitepaper", content=b"email=a", headers={"Content-Type": "text/plain"})
    assert odd.status_code == 415
    assert stored_nothing(engine)


def test_multipart_submission_is_accepted(
    client: TestClient, form: dict[str, Any], engine: Engine, clock: FrozenClock
) -> None:
    fields = [(k, (None, v)) for k, v in render(client, clock).items()]
    fields += [
        ("email", (None, "mp@example.jp")),
        ("last_name", (None, "山田")),
        ("interest", (None, "ma")),
        ("interest", (None, "sfa")),
        ("consent", (None, "on")),
    ]
    response = client.post("/f/whitepaper", files=fields)
    assert response.status_code == 200, response.text
    with engine.connect() as conn:
        props = conn.execute(select(events.c.properties)).scalar_one()
    assert props["answers"]["interest"] == ["ma", "sfa"]


def test_honeypot_answers_success_but_stores_nothing(
    client: TestClient, form: dict[str, Any], engine: Engine, clock: FrozenClock
) -> None:
    data = {**render(client, clock), **answers(), "website_url": "http://spam.example"}
    response = client.post("/f/whitepaper", data=data)
    assert response.status_code == 200
    assert "ありがとうございます" in response.text
    assert stored_nothing(engine)
    with engine.connect() as conn:
        assert conn.execute(select(forms.c.spam_count)).scalar_one() == 1


def test_too_fast_submission_is_kept_as_machine_activity_only(
    client: TestClient, form: dict[str, Any], engine: Engine, clock: FrozenClock
) -> None:
    page = client.get("/f/whitepaper")
    parser = HiddenInputs()
    parser.feed(page.text)
    clock.advance(timedelta(seconds=1))
    response = client.post("/f/whitepaper", data={**parser.values, **answers()})
    assert response.status_code == 200
    with engine.connect() as conn:
        event = conn.execute(select(events)).mappings().one()
    assert event["machine"] is True
    assert "1.0 s" in event["machine_reason"]
    assert event["contact_id"] is None
    assert count(engine, contacts) == 0
    assert count(engine, consents) == 0


def test_forged_token_gets_no_idempotency_or_timing_credit(
    client: TestClient, form: dict[str, Any], engine: Engine, clock: FrozenClock
) -> None:
    hidden = render(client, clock)
    issued, nonce, _ = hidden["_sid"].split(".")
    forged = {**hidden, "_sid": f"{issued}.{nonce}.{'0' * 32}"}
    client.post("/f/whitepaper", data={**forged, **answers()})
    client.post("/f/whitepaper", data={**forged, **answers()})
    assert count(engine, events) == 2  # without a valid token each POST is its own submission


def test_double_submit_stores_one_event(
    client: TestClient, form: dict[str, Any], engine: Engine, clock: FrozenClock
) -> None:
    data = {**render(client, clock), **answers()}
    first = client.post("/f/whitepaper", data=data)
    second = client.post("/f/whitepaper", data=data)
    assert first.status_code == second.status_code == 200
    assert count(engine, events) == 1
    assert count(engine, consents) == 1
    assert count(engine, contacts) == 1


def test_redirect_goes_only_to_the_configured_url(
    client: TestClient, admin_key: str, engine: Engine, clock: FrozenClock
) -> None:
    definition = download_form(
        slug="inquiry",
        kind="inquiry",
        consent=None,
        fields=download_form()["fields"][:2],
        success={"redirect_url": "https://www.example.jp/thanks?from=form"},
    )
    auth = {"Authorization": f"Bearer {admin_key}"}
    assert client.post("/api/forms", json=definition, headers=auth).status_code == 201
    hidden = render(client, clock, "/f/inquiry")
    data = {
        **hidden,
        "email": "a@example.jp",
        "last_name": "田中",
        "redirect": "https://evil.example",
        "next": "https://evil.example",
    }
    response = client.post(
        "/f/inquiry?next=https://evil.example", data=data, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "https://www.example.jp/thanks?from=form"
    as_json = client.post("/f/inquiry", json={"email": "b@example.jp", "last_name": "林"})
    assert as_json.json() == {
        "ok": True,
        "message": "ありがとうございました。",
        "redirect": "https://www.example.jp/thanks?from=form",
        "document_url": None,
    }
    assert count(engine, consents) == 0  # no consent box: nothing recorded
    with engine.connect() as conn:
        assert set(conn.execute(select(contacts.c.email_consent)).scalars()) == {"none"}


def test_download_form_can_send_visitors_straight_to_the_document(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    definition = download_form(
        slug="catalog",
        consent={"required": False, "text": "案内を受け取る"},
        fields=download_form()["fields"][:2],
        success={
            "document_url": "https://cdn.example.jp/catalog.pdf",
            "redirect_to_document": True,
        },
    )
    assert admin.post("/api/forms", json=definition).status_code == 201
    data = {**render(admin, clock, "/f/catalog"), "email": "c@example.jp", "last_name": "森"}
    response = admin.post("/f/catalog", data=data, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "https://cdn.example.jp/catalog.pdf"
    assert count(engine, consents) == 0  # optional consent left unticked: no evidence row


def test_embed_script_contains_the_form_and_is_javascript(
    client: TestClient, form: dict[str, Any]
) -> None:
    script = client.get("/f/whitepaper.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("application/javascript")
    assert script.headers["cache-control"] == "no-store"
    body = script.text
    for key in ("email", "last_name", "custom.employees", "interest", "comment"):
        assert f'"key": "{key}"' in body
    assert "\\u30e1\\u30fc\\u30eb\\u30a2\\u30c9\\u30ec\\u30b9" in body  # メールアドレス
    assert "</script>" not in body.lower().replace("\\u003c", "")
    assert '"action": "http://testserver/f/whitepaper"' in body
    assert "ekiden_aid" in body
    assert "anonymousId" in body
    assert "data-ekiden-form" in body
    assert '"sid": "' in body
    english = client.get("/f/whitepaper.js?lang=en").text
    assert "Employees" in english


def test_embed_post_is_allowed_cross_origin(client: TestClient, form: dict[str, Any]) -> None:
    preflight = client.options(
        "/f/whitepaper",
        headers={
            "Origin": "https://www.customer.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]


def test_embed_round_trip_over_real_http(
    live_server: LiveServer, form: dict[str, Any], engine: Engine, clock: FrozenClock
) -> None:
    """What the embed does in a browser: fetch the script, post form-encoded, read JSON."""
    with httpx.Client(base_url=live_server.url) as http:
        script = http.get("/f/whitepaper.js").text
        sid = script.split('"sid": "')[1].split('"')[0]
        clock.advance(timedelta(seconds=30))
        data = {
            "_sid": sid,
            "_aid": "anon-embed",
            "_page": "https://www.customer.example/wp",
            "_ref": "https://search.example/",
            "utm_source": "ads",
            **answers(),
        }
        headers = {"Accept": "application/json", "Origin": "https://www.customer.example"}
        first = http.post("/f/whitepaper", data=data, headers=headers)
        second = http.post("/f/whitepaper", data=data, headers=headers)
    assert first.status_code == 200, first.text
    assert first.headers["access-control-allow-origin"] == "*"
    assert first.json()["document_url"] == "https://cdn.example.jp/wp.pdf"
    assert second.json()["ok"] is True
    with engine.connect() as conn:
        event = conn.execute(select(events)).mappings().one()
        linked = conn.execute(select(identities.c.value)).scalars().all()
    assert event["properties"]["page_url"] == "https://www.customer.example/wp"
    assert event["properties"]["utm_source"] == "ads"
    assert event["anonymous_id"] == "anon-embed"
    assert linked == ["anon-embed"]


def test_form_adds_every_submitter_to_its_lists(
    admin: TestClient, client: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    from ekiden.segments.tables import list_members

    bad = admin.post("/api/forms", json=download_form(add_to_lists=["nope"]))
    assert bad.status_code == 422
    assert "add_to_lists[0]: there is no list 'nope'" in bad.json()["error"]["message"]
    admin.post("/api/lists", json={"slug": "guide-readers", "name": "ガイド請求者"})
    made = admin.post(
        "/api/forms",
        json=download_form(add_to_lists=["guide-readers"], fields=download_form()["fields"][:3]),
    )
    assert made.status_code == 201, made.text
    del client.headers["Authorization"]
    sent = client.post("/f/whitepaper", data={**render(client, clock), **answers()})
    assert sent.status_code in (200, 303), sent.text
    with engine.connect() as conn:
        rows = conn.execute(select(list_members.c.source)).scalars().all()
    assert rows == ["form"]
