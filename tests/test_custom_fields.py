"""Custom field definitions (/api/custom-fields) and typed values on contacts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

Snapshot = Callable[[], dict[str, list[tuple[object, ...]]]]

FIELDS = [
    {"key": "memo", "label": "メモ", "type": "text"},
    {"key": "score", "label": "Score", "type": "number"},
    {"key": "employees", "label": "従業員数", "type": "integer"},
    {"key": "newsletter", "label": "Newsletter", "type": "boolean"},
    {"key": "visit_day", "label": "来場日", "type": "date"},
    {"key": "met_at", "label": "Met at", "type": "datetime"},
    {"key": "size", "label": "規模", "type": "choice", "choices": ["S", "M", "L"]},
    {"key": "interests", "label": "関心", "type": "multi_choice", "choices": ["MA", "SFA", "CRM"]},
    {"key": "assistant", "label": "Assistant", "type": "email"},
    {"key": "site", "label": "Site", "type": "url"},
]

# (key, accepted input, stored value, refused input)
VALUES = [
    ("memo", "展示会で名刺交換", "展示会で名刺交換", "x" * 10_001),
    ("score", "1,234.5", 1234.5, "lots"),
    ("employees", "1,200", 1200, 12.5),
    ("newsletter", "はい", True, "perhaps"),
    ("visit_day", "2026/04/01", "2026-04-01", "2026-13-01"),
    ("met_at", "2026-04-01T10:00:00+09:00", "2026-04-01T01:00:00Z", "2026-04-01T10:00:00"),
    ("size", "M", "M", "XL"),
    ("interests", ["MA", "CRM"], ["MA", "CRM"], ["MA", "ERP"]),
    ("assistant", "Aide@Example.COM", "Aide@example.com", "not-mail"),
    ("site", "https://ekiden.example/", "https://ekiden.example/", "javascript:alert(1)"),
]


@pytest.fixture
def defined(admin: TestClient) -> None:
    for field in FIELDS:
        response = admin.post("/api/custom-fields", json=field)
        assert response.status_code == 201, response.text


def test_definitions_are_listed_by_key(admin: TestClient, defined: None) -> None:
    listed = admin.get("/api/custom-fields").json()
    assert [f["key"] for f in listed["items"]] == sorted(f["key"] for f in FIELDS)
    assert listed["next"] is None


@pytest.mark.parametrize(("key", "given", "stored_value", "refused"), VALUES, ids=lambda v: str(v))
def test_each_type_is_coerced_and_checked(
    admin: TestClient,
    defined: None,
    stored: Snapshot,
    key: str,
    given: Any,
    stored_value: Any,
    refused: Any,
) -> None:
    created = admin.post("/api/contacts", json={"email": "a@example.com", "custom": {key: given}})
    assert created.status_code == 201, created.text
    assert created.json()["custom"] == {key: stored_value}
    contact_id = created.json()["id"]
    before = stored()
    response = admin.patch(f"/api/contacts/{contact_id}", json={"custom": {key: refused}})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_custom_field"
    assert f"custom.{key}" in error["message"]
    assert list(error["details"]) == [key]
    assert stored() == before


def test_null_clears_a_custom_value(admin: TestClient, defined: None) -> None:
    created = admin.post(
        "/api/contacts", json={"email": "a@example.com", "custom": {"size": "S", "memo": "x"}}
    ).json()
    patched = admin.patch(f"/api/contacts/{created['id']}", json={"custom": {"size": None}})
    assert patched.json()["custom"] == {"memo": "x"}


def test_unknown_and_bad_values_are_all_named(
    admin: TestClient, defined: None, stored: Snapshot
) -> None:
    before = stored()
    response = admin.post(
        "/api/contacts",
        json={"email": "a@example.com", "custom": {"colour": "red", "size": "XXL"}},
    )
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert details == {"colour": "is not a defined custom field", "size": "must be one of S, M, L"}
    assert stored() == before


def test_required_field_is_enforced_on_create(admin: TestClient, stored: Snapshot) -> None:
    admin.post(
        "/api/custom-fields",
        json={"key": "branch", "label": "支店", "type": "text", "required": True},
    )
    before = stored()
    response = admin.post("/api/contacts", json={"email": "a@example.com"})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"branch": "is required"}
    assert stored() == before
    ok = admin.post("/api/contacts", json={"email": "a@example.com", "custom": {"branch": "大阪"}})
    assert ok.status_code == 201


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"key": "Bad Key", "label": "x", "type": "text"}, 422),
        ({"key": "ok", "label": "x", "type": "colour"}, 422),
        ({"key": "ok", "label": "x", "type": "choice"}, 422),
        ({"key": "ok", "label": "x", "type": "text", "choices": ["a"]}, 422),
        ({"key": "ok", "label": "", "type": "text"}, 422),
        ({"key": "memo", "label": "again", "type": "text"}, 409),
    ],
)
def test_bad_definitions_are_refused(
    admin: TestClient, defined: None, stored: Snapshot, body: dict[str, Any], status: int
) -> None:
    before = stored()
    response = admin.post("/api/custom-fields", json=body)
    assert response.status_code == status, response.text
    assert stored() == before


def test_deleting_a_definition_keeps_stored_values(admin: TestClient, defined: None) -> None:
    created = admin.post("/api/contacts", json={"email": "a@example.com", "custom": {"size": "L"}})
    assert admin.delete("/api/custom-fields/size").status_code == 204
    assert admin.delete("/api/custom-fields/size").status_code == 404
    assert admin.get(f"/api/contacts/{created.json()['id']}").json()["custom"] == {"size": "L"}
    refused = admin.patch(f"/api/contacts/{created.json()['id']}", json={"custom": {"size": "S"}})
    assert refused.status_code == 422
