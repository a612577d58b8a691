"""The contacts and accounts REST API: behaviour, bad input, access."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from ekiden.auth.users import create_user
from ekiden.clock import FrozenClock
from ekiden.contacts.tables import consents, contacts
from ekiden.tracking.events import NewEvent, record_events

Snapshot = Callable[[], dict[str, list[tuple[object, ...]]]]


def make(admin: TestClient, **body: Any) -> dict[str, Any]:
    response = admin.post("/api/contacts", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    if code is not None:
        assert body["code"] == code
    return dict(body)


# --- create, find, read, update -------------------------------------------------------------


def test_create_stores_normalised_email_and_fields(admin: TestClient) -> None:
    created = make(
        admin,
        email="  Taro@Example.CO.JP ",
        last_name="山田",
        first_name="太郎",
        last_name_kana="ヤマダ",
        company="山田商事",
        tags=["展示会2026"],
    )
    assert created["email"] == "Taro@example.co.jp"
    assert created["source_kind"] == "api"
    assert created["tags"] == ["展示会2026"]
    again = admin.get(f"/api/contacts/{created['id']}").json()
    assert again == created


def test_find_by_email_is_exact_after_normalising(admin: TestClient) -> None:
    created = make(admin, email="hana@example.com")
    make(admin, email="hanako@example.com")
    found = admin.get("/api/contacts", params={"email": " hana@EXAMPLE.com"}).json()
    assert [c["id"] for c in found["items"]] == [created["id"]]
    assert found["next"] is None
    missing = admin.get("/api/contacts", params={"email": "nobody@example.com"}).json()
    assert missing == {"items": [], "next": None}


def test_duplicate_email_or_user_id_is_409_and_stores_nothing(
    admin: TestClient, stored: Snapshot
) -> None:
    make(admin, email="a@example.com", user_id="u-1")
    before = stored()
    error(admin.post("/api/contacts", json={"email": "a@EXAMPLE.com"}), 409, "contact_exists")
    error(admin.post("/api/contacts", json={"user_id": "u-1"}), 409, "contact_exists")
    assert stored() == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "not-an-email"}, 422, "invalid_email"),
        ({}, 422, "no_identity"),
        ({"email": "b@example.com", "favourite": 1}, 422, "invalid"),
        ({"email": "b@example.com", "custom": {"nope": 1}}, 422, "invalid_custom_field"),
        ({"email": "b@example.com", "owner_id": 999}, 422, "unknown_owner"),
        ({"email": "b@example.com", "account_id": 999}, 422, "unknown_account"),
        ({"email": "b@example.com", "tags": ["ok", ""]}, 422, "invalid_tag"),
        ({"email": "b@example.com", "country": "Japan"}, 422, "invalid"),
    ],
)
def test_bad_create_is_refused_and_stores_nothing(
    admin: TestClient, stored: Snapshot, body: dict[str, Any], status: int, code: str
) -> None:
    before = stored()
    error(admin.post("/api/contacts", json=body), status, code)
    assert stored() == before


def test_malformed_json_is_400(admin: TestClient, stored: Snapshot) -> None:
    before = stored()
    response = admin.post(
        "/api/contacts", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    error(response, 400, "malformed")
    assert stored() == before


def test_unknown_custom_field_is_named(admin: TestClient) -> None:
    body = error(
        admin.post("/api/contacts", json={"email": "c@x.jp", "custom": {"budjet": 5}}), 422
    )
    assert "custom.budjet" in body["message"]
    assert body["details"] == {"budjet": "is not a defined custom field"}


def test_unknown_id_is_404(admin: TestClient) -> None:
    error(admin.get("/api/contacts/12345"), 404, "not_found")
    error(admin.get(f"/api/contacts/{2**70}"), 422)


def test_patch_changes_only_given_fields(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        owner = create_user(conn, clock, email="sales@example.com", password="x" * 12, role="sales")
    created = make(admin, email="p@example.com", last_name="佐藤", company="旧社名")
    clock.advance(timedelta(minutes=5))
    response = admin.patch(
        f"/api/contacts/{created['id']}",
        json={"company": "新社名", "job_title": None, "owner_id": owner.id},
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["company"] == "新社名"
    assert patched["last_name"] == "佐藤"
    assert patched["owner_id"] == owner.id
    assert patched["updated_at"] > created["updated_at"]


def test_patch_email_change_checks_conflicts(admin: TestClient, stored: Snapshot) -> None:
    first = make(admin, email="one@example.com")
    make(admin, email="two@example.com")
    before = stored()
    error(admin.patch(f"/api/contacts/{first['id']}", json={"email": "two@example.com"}), 409)
    error(admin.patch(f"/api/contacts/{first['id']}", json={"email": None}), 422)
    error(admin.patch(f"/api/contacts/{first['id']}", json={"email": "bad@"}), 422)
    error(
        admin.patch(
            f"/api/contacts/{first['id']}", json={"company": "X", "custom": {"undefined": 1}}
        ),
        422,
        "invalid_custom_field",
    )
    assert stored() == before
    moved = admin.patch(f"/api/contacts/{first['id']}", json={"email": "Uno@Example.com"})
    assert moved.json()["email"] == "Uno@example.com"


def test_there_is_no_hard_delete(admin: TestClient) -> None:
    created = make(admin, email="keep@example.com")
    assert admin.delete(f"/api/contacts/{created['id']}").status_code == 405
    assert admin.get(f"/api/contacts/{created['id']}").status_code == 200


# --- search and paging ----------------------------------------------------------------------


def test_search_matches_names_kana_company_and_email(admin: TestClient) -> None:
    a = make(admin, email="suzuki@alpha.jp", last_name="鈴木", last_name_kana="スズキ")
    b = make(admin, email="tanaka@beta.jp", company="Alpha Trading")
    make(admin, email="other@gamma.jp")

    def ids(**params: Any) -> list[int]:
        return [c["id"] for c in admin.get("/api/contacts", params=params).json()["items"]]

    assert ids(q="alpha") == [a["id"], b["id"]]
    assert ids(q="スズ") == [a["id"]]
    assert ids(q="鈴木") == [a["id"]]
    assert ids(q="100%_") == []


def test_search_filters_by_tag_owner_account_and_updated_since(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        owner = create_user(conn, clock, email="o@example.com", password="x" * 12, role="sales")
    account = admin.post("/api/accounts", json={"name": "Acme", "domain": "acme.jp"}).json()
    old = make(admin, email="old@acme.jp", tags=["vip"], account_id=account["id"])
    clock.advance(timedelta(days=1))
    new = make(admin, email="new@acme.jp", owner_id=owner.id)

    def ids(**params: Any) -> list[int]:
        response = admin.get("/api/contacts", params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert ids(tag="vip") == [old["id"]]
    assert ids(owner_id=owner.id) == [new["id"]]
    assert ids(account_id=account["id"]) == [old["id"]]
    assert ids(updated_since=new["updated_at"]) == [new["id"]]
    error(admin.get("/api/contacts", params={"updated_since": "2026-01-01T00:00:00"}), 422)


def test_paging_visits_every_contact_once(admin: TestClient) -> None:
    made = [make(admin, email=f"p{i}@example.com")["id"] for i in range(7)]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = admin.get("/api/contacts", params=params).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == made


@pytest.mark.parametrize("cursor", ["garbage!", "eyJ4IjoxfQ", "eyJpZCI6ImEifQ"])
def test_bad_cursor_is_400(admin: TestClient, cursor: str) -> None:
    error(admin.get("/api/contacts", params={"cursor": cursor}), 400, "malformed")


def test_bad_limit_is_400(admin: TestClient) -> None:
    error(admin.get("/api/contacts", params={"limit": 0}), 400)
    error(admin.get("/api/contacts", params={"limit": 501}), 400)


# --- tags, consent, flags --------------------------------------------------------------------


def test_tags_are_added_listed_and_removed(admin: TestClient, stored: Snapshot) -> None:
    cid = make(admin, email="t@example.com")["id"]
    assert admin.put(f"/api/contacts/{cid}/tags/セミナー").json()["tags"] == ["セミナー"]
    assert admin.put(f"/api/contacts/{cid}/tags/2026%2Fspring").json()["tags"] == [
        "2026/spring",
        "セミナー",
    ]
    assert admin.put(f"/api/contacts/{cid}/tags/セミナー").status_code == 200  # idempotent
    before = stored()
    error(admin.put(f"/api/contacts/{cid}/tags/" + "x" * 101), 422, "invalid_tag")
    error(admin.put(f"/api/contacts/{cid}/tags/a%07b"), 422, "invalid_tag")
    error(admin.put("/api/contacts/999/tags/x"), 404)
    assert stored() == before
    assert admin.delete(f"/api/contacts/{cid}/tags/セミナー").json()["tags"] == ["2026/spring"]


def test_consent_is_recorded_with_evidence_and_history(
    admin: TestClient, clock: FrozenClock
) -> None:
    cid = make(admin, email="c@example.com")["id"]
    assert admin.get(f"/api/contacts/{cid}").json()["email_consent"] == "none"
    granted = admin.post(
        f"/api/contacts/{cid}/consent",
        json={"status": "granted", "text_shown": "メールを受け取る", "ip": "203.0.113.9"},
    )
    assert granted.status_code == 201, granted.text
    assert granted.json()["source"] == "api"
    assert granted.json()["source_ref"].startswith("api:ek_ad_")
    clock.advance(timedelta(hours=1))
    admin.post(f"/api/contacts/{cid}/consent", json={"status": "withdrawn"})
    assert admin.get(f"/api/contacts/{cid}").json()["email_consent"] == "withdrawn"
    history = admin.get(f"/api/contacts/{cid}/consent").json()
    assert [h["status"] for h in history["items"]] == ["withdrawn", "granted"]
    assert history["items"][1]["ip"] == "203.0.113.9"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "maybe"},
        {"status": "granted", "ip": "not-an-ip"},
        {"status": "granted", "source": "form"},
        {},
    ],
)
def test_bad_consent_is_422_and_stores_nothing(
    admin: TestClient, stored: Snapshot, body: dict[str, Any]
) -> None:
    cid = make(admin, email="c@example.com")["id"]
    before = stored()
    error(admin.post(f"/api/contacts/{cid}/consent", json=body), 422)
    assert stored() == before


def test_unsubscribe_records_withdrawal_and_can_be_reversed(
    admin: TestClient, engine: Engine
) -> None:
    cid = make(admin, email="u@example.com")["id"]
    admin.post(f"/api/contacts/{cid}/consent", json={"status": "granted"})
    unsubscribed = admin.post(f"/api/contacts/{cid}/unsubscribe").json()
    assert unsubscribed["unsubscribed_at"] is not None
    assert unsubscribed["email_consent"] == "withdrawn"
    admin.post(f"/api/contacts/{cid}/unsubscribe")  # a second opt-out records nothing new
    with engine.connect() as conn:
        sources = conn.execute(
            select(consents.c.source).where(consents.c.contact_id == cid).order_by(consents.c.id)
        ).scalars()
        assert list(sources) == ["api", "unsubscribe"]
    back = admin.delete(f"/api/contacts/{cid}/unsubscribe").json()
    assert back["unsubscribed_at"] is None
    assert back["email_consent"] == "withdrawn"  # clearing the flag is not consent


def test_suppress_needs_a_reason_and_can_be_lifted(admin: TestClient, stored: Snapshot) -> None:
    cid = make(admin, email="s@example.com")["id"]
    before = stored()
    error(admin.post(f"/api/contacts/{cid}/suppress", json={"reason": ""}), 422)
    error(admin.post(f"/api/contacts/{cid}/suppress", json={}), 422)
    assert stored() == before
    suppressed = admin.post(f"/api/contacts/{cid}/suppress", json={"reason": "hard bounce"})
    assert suppressed.json()["suppression_reason"] == "hard bounce"
    assert suppressed.json()["suppressed_at"] is not None
    lifted = admin.delete(f"/api/contacts/{cid}/suppress").json()
    assert lifted["suppressed_at"] is None
    assert lifted["suppression_reason"] is None


# --- timeline -------------------------------------------------------------------------------


def _events(engine: Engine, clock: FrozenClock, contact_id: int) -> None:
    start = clock.now()
    batch = [
        NewEvent(type="page", occurred_at=start - timedelta(minutes=10), source="api",
                 contact_id=contact_id, path="/a", message_id="m1"),
        NewEvent(type="email_clicked", occurred_at=start - timedelta(minutes=5), source="email",
                 contact_id=contact_id, machine=True, machine_reason="scanner", message_id="m2"),
        NewEvent(type="page", occurred_at=start - timedelta(minutes=5), source="api",
                 contact_id=contact_id, path="/b", message_id="m3"),
        NewEvent(type="form_submitted", occurred_at=start, source="form",
                 contact_id=contact_id, message_id="m4"),
        NewEvent(type="page", occurred_at=start, source="api", anonymous_id="someone-else",
                 message_id="m5"),
    ]  # fmt: skip
    with engine.begin() as conn:
        record_events(conn, clock, batch)


def test_timeline_is_newest_first_and_pages_on_time_and_id(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    cid = make(admin, email="tl@example.com")["id"]
    _events(engine, clock, cid)
    first = admin.get(f"/api/contacts/{cid}/events", params={"limit": 2}).json()
    second = admin.get(
        f"/api/contacts/{cid}/events", params={"limit": 2, "cursor": first["next"]}
    ).json()
    items = first["items"] + second["items"]
    assert [e["message_id"] for e in items] == ["m4", "m3", "m2", "m1"]
    assert second["next"] is None
    assert items[2]["machine"] is True


def test_timeline_filters_by_type_and_machine(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    cid = make(admin, email="tl@example.com")["id"]
    _events(engine, clock, cid)

    def ids(**params: Any) -> list[str]:
        page = admin.get(f"/api/contacts/{cid}/events", params=params)
        assert page.status_code == 200, page.text
        return [e["message_id"] for e in page.json()["items"]]

    assert ids(type="page") == ["m3", "m1"]
    assert ids(type=["page", "form_submitted"]) == ["m4", "m3", "m1"]
    assert ids(machine="exclude") == ["m4", "m3", "m1"]
    assert ids(machine="only") == ["m2"]
    error(admin.get(f"/api/contacts/{cid}/events", params={"machine": "some"}), 422)
    error(admin.get(f"/api/contacts/{cid}/events", params={"cursor": "eyJpZCI6MX0"}), 400)
    error(admin.get("/api/contacts/999/events"), 404)


# --- accounts -------------------------------------------------------------------------------


def test_accounts_crud_and_domain_unique(admin: TestClient, stored: Snapshot) -> None:
    created = admin.post(
        "/api/accounts", json={"name": "株式会社エキデン", "domain": "https://www.Ekiden.CO.JP/"}
    )
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["domain"] == "ekiden.co.jp"
    before = stored()
    error(admin.post("/api/accounts", json={"name": "Dup", "domain": "ekiden.co.jp"}), 409)
    error(admin.post("/api/accounts", json={"domain": "x.jp"}), 422)
    error(admin.post("/api/accounts", json={"name": "Bad", "domain": "not a domain"}), 422)
    error(admin.post("/api/accounts", json={"name": "Bad", "owner_id": 42}), 422)
    error(admin.patch(f"/api/accounts/{account['id']}", json={"name": None}), 422)
    assert stored() == before
    patched = admin.patch(f"/api/accounts/{account['id']}", json={"employees": 120}).json()
    assert patched["employees"] == 120
    assert patched["name"] == "株式会社エキデン"
    other = admin.post("/api/accounts", json={"name": "Other", "domain": "other.jp"}).json()
    error(admin.patch(f"/api/accounts/{other['id']}", json={"domain": "ekiden.co.jp"}), 409)
    error(admin.get("/api/accounts/999"), 404)


def test_accounts_list_pages_and_lists_contacts(admin: TestClient) -> None:
    ids = [
        admin.post("/api/accounts", json={"name": f"Company {i}"}).json()["id"] for i in range(3)
    ]
    first = admin.get("/api/accounts", params={"limit": 2}).json()
    second = admin.get("/api/accounts", params={"limit": 2, "cursor": first["next"]}).json()
    assert [a["id"] for a in first["items"] + second["items"]] == ids
    assert second["next"] is None
    member = make(admin, email="m@company.jp", account_id=ids[1])
    make(admin, email="n@company.jp")
    listed = admin.get(f"/api/accounts/{ids[1]}/contacts").json()
    assert [c["id"] for c in listed["items"]] == [member["id"]]
    error(admin.get("/api/accounts/999/contacts"), 404)
    error(admin.get("/api/accounts", params={"cursor": "nonsense"}), 400)


# --- access ---------------------------------------------------------------------------------

MUTATING = [
    ("POST", "/api/contacts", {"email": "x@example.com"}),
    ("PATCH", "/api/contacts/1", {"company": "X"}),
    ("PUT", "/api/contacts/1/tags/vip", None),
    ("DELETE", "/api/contacts/1/tags/vip", None),
    ("POST", "/api/contacts/1/consent", {"status": "granted"}),
    ("POST", "/api/contacts/1/unsubscribe", None),
    ("DELETE", "/api/contacts/1/unsubscribe", None),
    ("POST", "/api/contacts/1/suppress", {"reason": "bounce"}),
    ("DELETE", "/api/contacts/1/suppress", None),
    ("POST", "/api/contacts/merge", {"winner_id": 1, "loser_id": 2}),
    ("POST", "/api/accounts", {"name": "A"}),
    ("PATCH", "/api/accounts/1", {"name": "B"}),
    ("POST", "/api/custom-fields", {"key": "k", "label": "K", "type": "text"}),
    ("DELETE", "/api/custom-fields/k", None),
]
READING = ["/api/contacts", "/api/contacts/1", "/api/contacts/1/events", "/api/accounts",
           "/api/contacts/1/consent", "/api/custom-fields"]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), MUTATING)
def test_mutations_need_an_admin_key(
    client: TestClient,
    admin_key: str,
    ingest_key: str,
    stored: Snapshot,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    client.headers["Authorization"] = f"Bearer {admin_key}"
    client.post("/api/contacts", json={"email": "one@example.com"})
    client.post("/api/contacts", json={"email": "two@example.com"})
    client.post("/api/accounts", json={"name": "A"})
    del client.headers["Authorization"]
    before = stored()
    error(client.request(method, path, json=body), 401, "unauthorized")
    bad = {"Authorization": "Bearer ek_ad_wrong"}
    error(client.request(method, path, json=body, headers=bad), 401, "unauthorized")
    ingest = {"Authorization": f"Bearer {ingest_key}"}
    error(client.request(method, path, json=body, headers=ingest), 403, "forbidden")
    assert stored() == before


@pytest.mark.parametrize("path", READING)
def test_reads_need_an_admin_key(client: TestClient, ingest_key: str, path: str) -> None:
    error(client.get(path), 401)
    error(client.get(path, headers={"Authorization": f"Bearer {ingest_key}"}), 403)


def test_openapi_lists_the_contacts_api(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in ("/api/contacts", "/api/contacts/{contact_id}/events", "/api/contacts/merge",
                 "/api/accounts", "/api/custom-fields"):  # fmt: skip
        assert path in paths
    assert "delete" not in paths["/api/contacts/{contact_id}"]


def test_contacts_table_untouched_by_reads(admin: TestClient, engine: Engine) -> None:
    cid = make(admin, email="r@example.com")["id"]
    with engine.connect() as conn:
        before = conn.execute(select(contacts).where(contacts.c.id == cid)).one()
    admin.get(f"/api/contacts/{cid}")
    admin.get("/api/contacts", params={"q": "r"})
    with engine.connect() as conn:
        assert conn.execute(select(contacts).where(contacts.c.id == cid)).one() == before
