"""Admin API for form definitions: create, read, list, update, archive; bad definitions."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from ekiden.clock import FrozenClock
from ekiden.contacts.customfields import CustomFieldDefinition, define_field
from ekiden.forms.tables import forms


def webinar_form(slug: str = "webinar-2026") -> dict[str, Any]:
    return {
        "name": "Webinar November",
        "slug": slug,
        "kind": "webinar",
        "title": {"ja": "ウェビナー申込", "en": "Webinar sign-up"},
        "fields": [
            {
                "key": "email",
                "type": "email",
                "label": {"ja": "メール", "en": "Email"},
                "required": True,
            },
            {"key": "last_name", "label": {"ja": "姓", "en": "Last name"}, "required": True},
            {
                "key": "session",
                "type": "radio",
                "label": {"ja": "参加回", "en": "Session"},
                "options": ["morning", "evening"],
            },
        ],
        "consent": {"required": True, "text": {"ja": "案内メールを受け取る", "en": "Send me news"}},
        "success": {
            "message": {"ja": "お申込みありがとうございます", "en": "Thanks for signing up"}
        },
    }


def form_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(forms)).scalar_one())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (
            lambda d: d["fields"].append({"key": "size", "type": "select", "label": "規模"}),
            "fields[3].options: a select field needs options",
        ),
        (lambda d: d["fields"].pop(0), "fields: a form needs an email field"),
        (lambda d: d.update(slug="Not A Slug"), "slug: must be"),
        (lambda d: d.update(kind="webinar-ish"), "kind:"),
        (
            lambda d: d["fields"][1].update(type="checkbox"),
            "fields[1].type: contact field last_name",
        ),
        (lambda d: d["fields"][2].update(key="last_name"), "fields[2].key: 'last_name' is used"),
        (
            lambda d: d["fields"][2].update(key="custom.nowhere"),
            "fields[2].key: custom field 'nowhere' is not defined",
        ),
        (
            lambda d: d["fields"][2].update(key="utm_source"),
            "fields[2].key: 'utm_source' is reserved",
        ),
        (lambda d: d["fields"][0].update(required=False), "fields[0].required: the email field"),
        (lambda d: d["fields"][1].update(options=["a"]), "fields[1].options: only select"),
        (
            lambda d: d.update(success={"redirect_url": "javascript:alert(1)"}),
            "success.redirect_url: must be an absolute http",
        ),
        (
            lambda d: d.update(kind="download"),
            "success.document_url: a download form needs the document's URL",
        ),
        (lambda d: d["fields"][1].update(label={"en": "only English"}), "fields[1].label.ja"),
        (lambda d: d.update(colour="red"), "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_definition_is_refused_naming_the_part(
    admin: TestClient, engine: Engine, change: Any, named: str
) -> None:
    definition = copy.deepcopy(webinar_form())
    change(definition)
    response = admin.post("/api/forms", json=definition)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert named in error["message"]
    assert form_count(engine) == 0


def test_create_get_list_update_archive(admin: TestClient) -> None:
    created = admin.post("/api/forms", json=webinar_form())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["slug"] == "webinar-2026"
    assert body["hosted_url"] == "http://testserver/f/webinar-2026"
    assert 'data-ekiden-form="webinar-2026"' in body["embed_html"]
    assert body["definition"]["fields"][2]["options"][0] == {
        "value": "morning",
        "label": {"ja": "morning", "en": None},
    }

    assert admin.get("/api/forms/webinar-2026").json()["name"] == "Webinar November"

    patched = admin.patch("/api/forms/webinar-2026", json={"name": "Webinar December"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Webinar December"
    assert patched.json()["definition"]["consent"]["required"] is True

    replaced = admin.put("/api/forms/webinar-2026", json={**webinar_form(), "consent": None})
    assert replaced.json()["definition"]["consent"] is None
    assert replaced.json()["name"] == "Webinar November"

    bad_patch = admin.patch("/api/forms/webinar-2026", json={"fields": []})
    assert bad_patch.status_code == 422
    assert "fields:" in bad_patch.json()["error"]["message"]
    assert admin.get("/api/forms/webinar-2026").json()["definition"]["fields"]

    archived = admin.post("/api/forms/webinar-2026/archive")
    assert archived.json()["archived"] is True
    assert admin.get("/api/forms").json()["items"] == []
    listed = admin.get("/api/forms", params={"include_archived": "true"}).json()
    assert [f["slug"] for f in listed["items"]] == ["webinar-2026"]
    assert admin.post("/api/forms/webinar-2026/restore").json()["archived"] is False


def test_slug_is_unique(admin: TestClient, engine: Engine) -> None:
    assert admin.post("/api/forms", json=webinar_form()).status_code == 201
    again = admin.post("/api/forms", json=webinar_form())
    assert again.status_code == 409
    assert "webinar-2026" in again.json()["error"]["message"]
    assert admin.post("/api/forms", json=webinar_form("other")).status_code == 201
    renamed = admin.patch("/api/forms/other", json={"slug": "webinar-2026"})
    assert renamed.status_code == 409
    assert form_count(engine) == 2


def test_list_pages_with_a_cursor(admin: TestClient) -> None:
    for i in range(5):
        assert admin.post("/api/forms", json=webinar_form(f"form-{i}")).status_code == 201
    first = admin.get("/api/forms", params={"limit": 2}).json()
    assert [f["slug"] for f in first["items"]] == ["form-0", "form-1"]
    slugs = [f["slug"] for f in first["items"]]
    cursor = first["next"]
    while cursor:
        page = admin.get("/api/forms", params={"limit": 2, "cursor": cursor}).json()
        slugs += [f["slug"] for f in page["items"]]
        cursor = page["next"]
    assert slugs == [f"form-{i}" for i in range(5)]
    assert admin.get("/api/forms", params={"kind": "survey"}).json()["items"] == []
    assert admin.get("/api/forms", params={"cursor": "garbage"}).status_code == 400


def test_unknown_form_is_404_and_bad_json_400(admin: TestClient) -> None:
    assert admin.get("/api/forms/nope").status_code == 404
    assert admin.patch("/api/forms/nope", json={"name": "x"}).status_code == 404
    bad = admin.post(
        "/api/forms", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/forms"),
        ("get", "/api/forms"),
        ("get", "/api/forms/webinar-2026"),
        ("put", "/api/forms/webinar-2026"),
        ("patch", "/api/forms/webinar-2026"),
        ("post", "/api/forms/webinar-2026/archive"),
        ("post", "/api/forms/webinar-2026/restore"),
    ],
)
def test_admin_endpoints_need_an_admin_key(
    client: TestClient, ingest_key: str, engine: Engine, method: str, path: str
) -> None:
    body = webinar_form()
    no_key = client.request(method, path, json=body)
    assert no_key.status_code == 401
    ingest = client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {ingest_key}"}
    )
    assert ingest.status_code == 403
    assert form_count(engine) == 0


def test_every_example_in_the_forms_guide_is_accepted(
    admin: TestClient, engine: Engine, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        define_field(
            conn,
            clock,
            CustomFieldDefinition(key="household_size", label="世帯人数", type="integer"),
        )
    guide = (Path(__file__).parents[1] / "docs" / "FORMS.md").read_text(encoding="utf-8")
    examples = re.findall(r"```json\n(\{\n.*?\n\})\n```", guide, flags=re.DOTALL)
    kinds = []
    for example in examples:
        response = admin.post("/api/forms", json=json.loads(example))
        assert response.status_code == 201, response.text
        kinds.append(response.json()["kind"])
    assert kinds == ["download", "webinar", "inquiry", "survey"]
