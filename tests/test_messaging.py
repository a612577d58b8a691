"""Email templates (/api/emails) and composition: what a recipient's mail client receives."""

from __future__ import annotations

import email
import email.policy
import smtplib
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert

from ekiden.clock import FrozenClock
from ekiden.config import ConfigError, Settings, load_settings
from ekiden.contacts.accounts import AccountChanges, create_account
from ekiden.contacts.customfields import CustomFieldDefinition, define_field
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.errors import Invalid
from ekiden.messaging.compose import compose
from ekiden.messaging.models import EmailTemplateChanges, EmailTemplateIn
from ekiden.messaging.store import create_template, update_template
from ekiden.messaging.templates import TemplateProblem
from ekiden.segments.tables import segment_members, segments
from ekiden.tracking.events import NewEvent, record_events
from smtp_server import SmtpTestServer

HTML = """<html><head><style>p { color: #333333; } .lead { font-weight: bold; }</style></head>
<body><p class="lead">{{ contact.last_name | default('お客') }}様</p>
<p>{{ contact.company }} {{ contact.full_name }}</p>
<p><a href="https://www.example.co.jp/seminar?id=7&amp;x=1">セミナー詳細</a></p>
</body></html>"""


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(
        database_url=db_url,
        secret_key="test-secret-key-" + "x" * 32,
        base_url="https://mail.example.jp",
        email_sender_name="株式会社駅伝マーケティング",
        email_sender_address="info@example.jp",
        email_postal_address="東京都千代田区丸の内1-1-1",
        email_site_domains="example.co.jp",
    )


def person(engine: Engine, clock: FrozenClock, address: str, **fields: Any) -> int:
    with engine.begin() as conn:
        return upsert_contact(
            conn, clock, email=address, changes=ContactChanges(**fields), source_kind="api"
        ).contact_id


def template(engine: Engine, clock: FrozenClock, **fields: Any) -> None:
    values: dict[str, Any] = {
        "key": "seminar",
        "name": "Seminar invitation",
        "subject": "{{ contact.last_name | default('お客') }}様へセミナーのご案内",
        "preheader": "秋の新製品セミナー",
        "html": HTML,
    }
    values.update(fields)
    with engine.begin() as conn:
        create_template(conn, clock, EmailTemplateIn(**values))


def composed(
    engine: Engine, clock: FrozenClock, settings: Settings, contact_id: int, **kwargs: Any
) -> EmailMessage:
    options: dict[str, Any] = {"template": "seminar", "message_id": 501, "send_key": "autumn"}
    options.update(kwargs)
    parsed = email.message_from_bytes(
        wire(engine, clock, settings, contact_id, **options), policy=email.policy.default
    )
    assert isinstance(parsed, EmailMessage)
    return parsed


def wire(
    engine: Engine, clock: FrozenClock, settings: Settings, contact_id: int, **options: Any
) -> bytes:
    """The message's bytes as the SMTP transport sends them."""
    with engine.begin() as conn:
        return compose(conn, clock, settings, contact_id=contact_id, **options).as_bytes()


def parts(message: EmailMessage) -> tuple[str, str]:
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None
    assert html_part is not None
    text = str(text_part.get_content()).replace("\r\n", "\n")  # text/plain travels with CRLF
    return text, str(html_part.get_content())


def test_composed_message_has_encoded_japanese_headers_and_both_utf8_parts(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp", last_name="山田", first_name="花子")
    template(engine, clock)
    message = composed(engine, clock, settings, hanako)
    raw = wire(engine, clock, settings, hanako, template="seminar", message_id=501, send_key="a")
    headers = raw.decode("ascii").split("\r\n\r\n")[0]  # 7-bit on the wire
    assert "\r\nSubject: =?utf-8?b?" in headers
    assert headers.startswith("From: =?utf-8?b?")
    assert message["Subject"] == "山田様へセミナーのご案内"
    assert message["From"].addresses[0].display_name == "株式会社駅伝マーケティング"
    assert message["From"].addresses[0].addr_spec == "info@example.jp"
    assert message["To"].addresses[0].addr_spec == "hanako@example.jp"
    assert message["To"].addresses[0].display_name == "山田 花子"
    assert message["Message-ID"] == "<ekiden.501@mail.example.jp>"
    assert message.get_content_type() == "multipart/alternative"
    for part in message.iter_parts():
        assert part.get_content_charset() == "utf-8"
    text, html = parts(message)
    assert "山田様" in text
    assert "山田 花子" in text
    assert "山田様" in html


def test_message_id_is_stable_for_the_same_message(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp")
    template(engine, clock)
    first = composed(engine, clock, settings, hanako)
    clock.advance(timedelta(minutes=5))  # a retry later
    again = composed(engine, clock, settings, hanako)
    other = composed(engine, clock, settings, hanako, message_id=502)
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]


def test_missing_name_falls_back_to_the_default(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    anonymous = person(engine, clock, "someone@example.jp")
    template(engine, clock)
    message = composed(engine, clock, settings, anonymous)
    assert message["Subject"] == "お客様へセミナーのご案内"
    text, _ = parts(message)
    assert "お客様" in text
    assert "None" not in text


def test_latin_names_are_written_first_name_first(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    john = person(engine, clock, "john@example.com", last_name="Smith", first_name="John")
    template(engine, clock, html="<p>{{ contact.full_name }}</p>")
    text, _ = parts(composed(engine, clock, settings, john))
    assert "John Smith" in text


def test_css_is_inlined_and_preheader_hidden(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp", last_name="山田")
    template(engine, clock)
    text, html = parts(composed(engine, clock, settings, hanako))
    assert "<style>" not in html
    assert 'class="lead" style="color: #333333;font-weight: bold;"' in html.replace("; ", ";")
    preheader_at = html.index("秋の新製品セミナー")
    assert "display:none" in html[html.rindex("<div", 0, preheader_at) : preheader_at]
    assert html.index("秋の新製品セミナー") < html.index("山田様")  # first text in the body
    assert "秋の新製品セミナー" not in text


def test_text_part_is_generated_from_html_with_link_targets(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp", last_name="山田")
    template(engine, clock)
    text, _ = parts(composed(engine, clock, settings, hanako))
    assert "<p" not in text
    assert "color:" not in text
    line = next(line for line in text.splitlines() if "セミナー詳細" in line)
    assert "(https://mail.example.jp/t/c/" in line


def test_written_text_part_is_used_as_is(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp", last_name="山田")
    template(engine, clock, text="{{ contact.last_name }}様\nテキスト版です。\n")
    text, _ = parts(composed(engine, clock, settings, hanako))
    assert text.startswith("山田様\nテキスト版です。\n")


def test_marketing_mail_carries_sender_identity_and_one_click_unsubscribe(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp")
    template(engine, clock)
    message = composed(engine, clock, settings, hanako)
    text, html = parts(message)
    for body in (text, html):
        assert "株式会社駅伝マーケティング" in body
        assert "東京都千代田区丸の内1-1-1" in body
        assert "https://mail.example.jp/u/" in body
    unsubscribe = message["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://mail.example.jp/u/")
    assert unsubscribe.endswith(">")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    raw = wire(engine, clock, settings, hanako, template="seminar", message_id=501, send_key="a")
    raw_headers = raw.split(b"\r\n\r\n")[0].decode("ascii")
    assert "\r\nList-Unsubscribe: <https://mail.example.jp/u/" in raw_headers  # never encoded


def test_mailto_unsubscribe_is_offered_when_configured(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    with_mailto = settings.model_copy(update={"email_unsubscribe_mailto": "unsub@example.jp"})
    hanako = person(engine, clock, "hanako@example.jp")
    template(engine, clock)
    message = composed(engine, clock, with_mailto, hanako)
    targets = [t.strip() for t in message["List-Unsubscribe"].split(",")]
    assert targets[0].startswith("<https://")
    assert targets[1].startswith("<mailto:unsub@example.jp?subject=")


def test_transactional_mail_has_no_list_unsubscribe_but_names_the_sender(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp")
    template(engine, clock, category="transactional")
    message = composed(engine, clock, settings, hanako)
    assert message["List-Unsubscribe"] is None
    text, _ = parts(message)
    assert "株式会社駅伝マーケティング" in text
    assert "/u/" not in text


def test_content_blocks_follow_segment_stage_and_last_viewed_product(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    html = (
        '{% if "pricing-viewers" in contact.segments %}<p>キャンペーン価格</p>{% endif %}\n'
        '{% if contact.buying_stage == "hot" %}<p>担当者からご連絡します</p>{% endif %}\n'
        "{% if last_viewed %}<p>ご覧になった{{ last_viewed.name }}</p>"
        "{% else %}<p>人気の製品</p>{% endif %}"
    )
    viewer = person(engine, clock, "viewer@example.jp")
    other = person(engine, clock, "other@example.jp")
    with engine.begin() as conn:
        now = clock.now()
        segment_id = conn.execute(
            insert(segments)
            .values(slug="pricing-viewers", name="P", filter={}, created_at=now, updated_at=now)
            .returning(segments.c.id)
        ).scalar_one()
        conn.execute(
            insert(segment_members).values(segment_id=segment_id, contact_id=viewer, entered_at=now)
        )
        record_events(
            conn,
            clock,
            [NewEvent(type="Product Viewed", occurred_at=now, source="api", contact_id=viewer,
                      properties={"name": "MA Pro", "url": "https://www.example.co.jp/p/ma"})],
        )  # fmt: skip
    template(engine, clock, html=html)
    text, _ = parts(composed(engine, clock, settings, viewer))
    assert "キャンペーン価格" in text
    assert "ご覧になったMA Pro" in text
    text, _ = parts(composed(engine, clock, settings, other))
    assert "キャンペーン価格" not in text
    assert "人気の製品" in text
    assert "担当者からご連絡します" not in text


def test_account_and_custom_fields_personalise_and_missing_ones_fall_back(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    with engine.begin() as conn:
        define_field(
            conn, clock, CustomFieldDefinition(key="seminar_date", label="日", type="text")
        )
        account_id = create_account(
            conn, clock, AccountChanges(name="株式会社サンプル", domain="sample.co.jp")
        ).id
    with_account = person(
        engine, clock, "a@sample.co.jp", account_id=account_id, custom={"seminar_date": "12月3日"}
    )
    without = person(engine, clock, "b@example.jp")
    template(
        engine,
        clock,
        html="<p>{{ account.name | default('貴社') }}</p>"
        "<p>{{ contact.custom.seminar_date | default('後日ご案内') }}</p>",
    )
    text, _ = parts(composed(engine, clock, settings, with_account))
    assert "株式会社サンプル" in text
    assert "12月3日" in text
    text, _ = parts(composed(engine, clock, settings, without))
    assert "貴社" in text
    assert "後日ご案内" in text


def test_send_pins_the_version_it_rendered(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp")
    template(engine, clock, subject="最初の件名")
    with engine.begin() as conn:
        changed = update_template(
            conn, clock, "seminar", EmailTemplateChanges(subject="新しい件名")
        )
    assert changed.version == 2
    assert composed(engine, clock, settings, hanako, version=1)["Subject"] == "最初の件名"
    assert composed(engine, clock, settings, hanako)["Subject"] == "新しい件名"


def test_marketing_mail_without_postal_address_is_refused(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    bare = settings.model_copy(update={"email_postal_address": ""})
    hanako = person(engine, clock, "hanako@example.jp")
    template(engine, clock)
    with pytest.raises(Invalid, match="EKIDEN_EMAIL_POSTAL_ADDRESS"):
        composed(engine, clock, bare, hanako)


def test_composed_message_survives_a_real_smtp_round_trip(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp", last_name="山田", first_name="花子")
    template(engine, clock)
    data = wire(engine, clock, settings, hanako, template="seminar", message_id=7, send_key="a")
    with SmtpTestServer() as smtp:
        with smtplib.SMTP("127.0.0.1", smtp.port) as client:
            client.sendmail("bounce@example.jp", ["hanako@example.jp"], data)
        [arrived] = smtp.parsed()
    assert arrived["Message-ID"] == "<ekiden.7@mail.example.jp>"
    assert arrived["Subject"] == "山田様へセミナーのご案内"
    assert arrived["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = parts(arrived)
    assert "山田 花子" in text
    assert "山田様" in html


def test_bad_sender_address_fails_at_start_up() -> None:
    with pytest.raises(ConfigError, match="EKIDEN_EMAIL_SENDER_ADDRESS"):
        load_settings(email_sender_address="info@@example")


@pytest.mark.parametrize(
    ("html", "line", "variable"),
    [
        ("<p>ok</p>\n<p>{{ contcat.name }}</p>", 2, "contcat"),
        ("<p>\n\n{{ contact.nickname }}</p>", 3, "contact.nickname"),
        ("<p>{{ contact.custom.budjet }}</p>", 1, "contact.custom.budjet"),
        ("<p>{{ ''.__class__ }}</p>", 1, "__class__"),
    ],
)
def test_template_with_unknown_name_or_escape_attempt_is_refused(
    engine: Engine, clock: FrozenClock, html: str, line: int, variable: str
) -> None:
    with engine.begin() as conn:
        define_field(conn, clock, CustomFieldDefinition(key="budget", label="予算", type="number"))
    with pytest.raises(TemplateProblem) as raised:
        template(engine, clock, html=html)
    assert raised.value.details["part"] == "html"
    assert raised.value.details["line"] == line
    assert raised.value.details["variable"] == variable


@pytest.mark.parametrize(
    "html",
    ["<p>{{ 'x' * 100000000 }}</p>", "<p>{{ 9 ** 99999999 }}</p>", "<p>{{ [1] * 10**9 }}</p>"],
)
def test_template_that_would_exhaust_memory_is_refused(
    engine: Engine, clock: FrozenClock, html: str
) -> None:
    with pytest.raises(TemplateProblem, match="too"):
        template(engine, clock, html=html)


def test_sandbox_blocks_attribute_reached_at_run_time(engine: Engine, clock: FrozenClock) -> None:
    # the attribute name is computed, so only the sandbox can stop it
    html = "<p>{% set n = '__cla' ~ 'ss__' %}{{ contact[n] }}{{ (contact|attr(n)).mro() }}</p>"
    with pytest.raises(TemplateProblem) as raised:
        template(engine, clock, html=html)
    assert raised.value.details["line"] == 1


# --- the REST API ---

BODY = {
    "key": "welcome",
    "name": "Welcome",
    "subject": "{{ contact.last_name | default('お客') }}様、ようこそ",
    "html": "<p>{{ contact.full_name | default('お客') }}様</p>",
}


def test_template_api_creates_reads_updates_and_archives(admin: TestClient) -> None:
    created = admin.post("/api/emails", json=BODY)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert created.json()["category"] == "marketing"
    assert admin.get("/api/emails/welcome").json()["subject"] == BODY["subject"]
    changed = admin.patch("/api/emails/welcome", json={"html": "<p>新しい本文</p>"})
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    assert [t["key"] for t in admin.get("/api/emails").json()["items"]] == ["welcome"]
    assert admin.delete("/api/emails/welcome").status_code == 204
    assert admin.get("/api/emails").json()["items"] == []
    assert [t["key"] for t in admin.get("/api/emails?archived=true").json()["items"]] == ["welcome"]


def test_clearing_a_required_part_is_refused_and_text_can_be_cleared(admin: TestClient) -> None:
    admin.post("/api/emails", json={**BODY, "text": "テキスト"})
    refused = admin.patch("/api/emails/welcome", json={"subject": None})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {"field": "subject"}
    cleared = admin.patch("/api/emails/welcome", json={"text": None})
    assert cleared.json()["text"] is None
    assert cleared.json()["version"] == 2


def test_duplicate_key_is_a_conflict(admin: TestClient) -> None:
    assert admin.post("/api/emails", json=BODY).status_code == 201
    answer = admin.post("/api/emails", json=BODY)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "email_exists"


def test_invalid_template_is_a_422_naming_line_and_nothing_is_stored(
    admin: TestClient, stored: Any
) -> None:
    before = stored()
    answer = admin.post(
        "/api/emails", json={**BODY, "html": "<p>\n{% if contact.company %}\n<p>open</p>"}
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_template"
    assert error["details"]["part"] == "html"
    assert error["details"]["line"] == 2  # the block left open
    assert "endif" in error["message"]
    assert stored() == before


def test_validate_endpoint_checks_without_saving(admin: TestClient, stored: Any) -> None:
    before = stored()
    assert admin.post("/api/emails/validate", json=BODY).json() == {"valid": True}
    bad = admin.post("/api/emails/validate", json={**BODY, "subject": "{{ contact.nope }}"})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"] == {
        "part": "subject",
        "line": 1,
        "variable": "contact.nope",
    }
    assert stored() == before


def test_preview_renders_for_any_contact(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    hanako = person(engine, clock, "hanako@example.jp", last_name="山田", first_name="花子")
    admin.post("/api/emails", json=BODY)
    answer = admin.post("/api/emails/welcome/preview", json={"contact_id": hanako})
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["subject"] == "山田様、ようこそ"
    assert "山田 花子様" in preview["html"]
    assert "山田 花子様" in preview["text"]
    assert preview["to"] == "山田 花子 <hanako@example.jp>"
    assert "/t/o/" not in preview["html"]  # a preview opens nothing
    assert "https://mail.example.jp/u/preview" in preview["html"]  # and unsubscribes nobody
    assert admin.post("/u/preview", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    missing = admin.post("/api/emails/welcome/preview", json={"contact_id": 999})
    assert missing.status_code == 404


def test_template_endpoints_need_an_admin_key(client: TestClient, ingest_key: str) -> None:
    calls = [
        ("post", "/api/emails", BODY),
        ("post", "/api/emails/validate", BODY),
        ("patch", "/api/emails/welcome", {"name": "x"}),
        ("delete", "/api/emails/welcome", None),
        ("post", "/api/emails/welcome/preview", {"contact_id": 1}),
    ]
    for method, path, body in calls:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        assert client.request(method, path, **kwargs).status_code == 401
        ingest = {"Authorization": f"Bearer {ingest_key}"}
        assert client.request(method, path, headers=ingest, **kwargs).status_code == 403


def test_wire_form_is_what_the_email_package_writes_and_follows_edits(
    engine: Engine, clock: FrozenClock, settings: Settings
) -> None:
    hanako = person(engine, clock, "hanako@example.jp", last_name="山田", first_name="花子")
    template(engine, clock)
    with engine.begin() as conn:
        message = compose(
            conn, clock, settings, template="seminar", contact_id=hanako, message_id=9,
            send_key="autumn",
        )  # fmt: skip
    generated = EmailMessage.as_bytes(message)  # the standard generator, no shortcut
    assert message.as_bytes() == generated
    assert message.as_bytes(policy=message.policy.clone(linesep="\n")) == generated.replace(
        b"\r\n", b"\n"
    )
    message["X-Ekiden-Test"] = "yes"
    assert b"\r\nX-Ekiden-Test: yes\r\n" in message.as_bytes()
