"""Merging contacts (API and CLI): nothing the loser held is lost, and the merge is recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from ekiden.auth.users import create_user
from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.contacts.customfields import CustomFieldDefinition, define_field
from ekiden.contacts.identity import link_anonymous_id
from ekiden.contacts.merge import MERGE_STEPS, MergeContext, merge_contacts
from ekiden.contacts.tables import contact_merges, contacts, identities
from ekiden.errors import Invalid
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events

Snapshot = Callable[[], dict[str, list[tuple[object, ...]]]]


def make(admin: TestClient, **body: Any) -> int:
    response = admin.post("/api/contacts", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def merge(admin: TestClient, winner: int, loser: int) -> Any:
    return admin.post("/api/contacts/merge", json={"winner_id": winner, "loser_id": loser})


@pytest.fixture
def pair(admin: TestClient, engine: Engine, clock: FrozenClock) -> tuple[int, int]:
    """Two records of one person, each holding something the other lacks."""
    with engine.begin() as conn:
        define_field(conn, clock, CustomFieldDefinition(key="budget", label="予算", type="integer"))
        define_field(conn, clock, CustomFieldDefinition(key="plan", label="Plan", type="text"))
        owner = create_user(conn, clock, email="s@corp.jp", password="x" * 12, role="sales")
    winner = make(
        admin, email="taro@corp.jp", last_name="山田", company="", tags=["vip", "seminar"],
        custom={"plan": "gold"},
    )  # fmt: skip
    admin.post(f"/api/contacts/{winner}/consent", json={"status": "granted"})
    clock.advance(timedelta(hours=1))
    loser = make(
        admin, email="taro.yamada@gmail.com", user_id="crm-77", last_name="Yamada",
        first_name="太郎", company="Corp KK", owner_id=owner.id, tags=["seminar", "download"],
        custom={"budget": 500, "plan": "silver"},
    )  # fmt: skip
    clock.advance(timedelta(hours=1))
    admin.post(f"/api/contacts/{loser}/consent", json={"status": "withdrawn"})
    admin.post(f"/api/contacts/{loser}/unsubscribe")
    with engine.begin() as conn:
        link_anonymous_id(conn, clock, "anon-phone", loser, device="mobile")
        record_events(
            conn,
            clock,
            [
                NewEvent(
                    type="page",
                    occurred_at=clock.now(),
                    source="api",
                    contact_id=c,
                    message_id=f"e{c}-{i}",
                )
                for c in (winner, loser)
                for i in range(3)
            ],
        )
    return winner, loser


def test_merge_keeps_everything_on_the_winner(
    admin: TestClient, engine: Engine, pair: tuple[int, int]
) -> None:
    winner, loser = pair
    response = merge(admin, winner, loser)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["moved"] == {"events": 3, "identities": 1, "tags": 2, "consents": 2}
    merged = body["winner"]
    assert merged["email"] == "taro@corp.jp"
    assert merged["external_id"] == "crm-77"  # gap filled from the loser
    assert merged["last_name"] == "山田"  # the winner's value wins
    assert merged["first_name"] == "太郎"
    assert merged["company"] == "Corp KK"  # empty on the winner: filled
    assert merged["owner_id"] is not None
    assert merged["custom"] == {"plan": "gold", "budget": 500}
    assert merged["tags"] == ["download", "seminar", "vip"]
    # the most recent consent decision of either (the loser's withdrawal) holds
    assert merged["email_consent"] == "withdrawn"
    assert merged["unsubscribed_at"] is not None  # the most restrictive flag wins

    timeline = admin.get(f"/api/contacts/{winner}/events", params={"limit": 500}).json()
    assert len(timeline["items"]) == 6
    consent = admin.get(f"/api/contacts/{winner}/consent").json()["items"]
    assert [c["status"] for c in consent] == ["withdrawn", "withdrawn", "granted"]

    # the old address and the anonymous id now find the winner
    found = admin.get("/api/contacts", params={"email": "taro.yamada@gmail.com"}).json()
    assert [c["id"] for c in found["items"]] == [winner]
    with engine.connect() as conn:
        owners = {
            row.value: row.contact_id
            for row in conn.execute(select(identities.c.value, identities.c.contact_id))
        }
        assert owners["anon-phone"] == winner
        assert owners["taro.yamada@gmail.com"] == winner
        assert conn.execute(select(events.c.id).where(events.c.contact_id == loser)).all() == []
        record = conn.execute(select(contact_merges)).one()
        assert (record.winner_id, record.loser_id) == (winner, loser)
        assert record.merged_by.startswith("api:ek_ad_")
        assert record.loser_snapshot["email"] == "taro.yamada@gmail.com"
        assert record.loser_snapshot["tags"] == ["download", "seminar"]
        tomb = conn.execute(select(contacts).where(contacts.c.id == loser)).one()
        assert (tomb.email, tomb.external_id, tomb.merged_into_id) == (None, None, winner)


def test_merged_away_id_answers_404_naming_the_winner(
    admin: TestClient, pair: tuple[int, int]
) -> None:
    winner, loser = pair
    merge(admin, winner, loser)
    response = admin.get(f"/api/contacts/{loser}")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "merged"
    assert str(winner) in error["message"]
    assert error["details"] == {"merged_into": winner}
    assert admin.patch(f"/api/contacts/{loser}", json={"company": "x"}).status_code == 404
    assert admin.get(f"/api/contacts/{loser}/events").json()["error"]["code"] == "merged"


def test_a_second_merge_follows_the_chain(admin: TestClient, pair: tuple[int, int]) -> None:
    winner, loser = pair
    third = make(admin, email="third@corp.jp")
    merge(admin, winner, loser)
    assert merge(admin, third, winner).status_code == 200
    error = admin.get(f"/api/contacts/{loser}").json()["error"]
    assert error["details"] == {"merged_into": third}
    found = admin.get("/api/contacts", params={"email": "taro.yamada@gmail.com"}).json()
    assert [c["id"] for c in found["items"]] == [third]
    # the winner's original address is now an identity of the third contact too
    found = admin.get("/api/contacts", params={"email": "taro@corp.jp"}).json()
    assert [c["id"] for c in found["items"]] == [third]


def test_old_address_cannot_be_used_for_a_new_contact(
    admin: TestClient, pair: tuple[int, int]
) -> None:
    winner, loser = pair
    merge(admin, winner, loser)
    response = admin.post("/api/contacts", json={"email": "taro.yamada@gmail.com"})
    assert response.status_code == 409
    assert response.json()["error"]["details"] == {"contact_id": winner}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"winner_id": 1, "loser_id": 1}, 422, "same_contact"),
        ({"winner_id": 1, "loser_id": 999}, 404, "not_found"),
        ({"winner_id": 999, "loser_id": 1}, 404, "not_found"),
        ({"winner_id": 1}, 422, "invalid"),
        ({"winner_id": "one", "loser_id": 2}, 422, "invalid"),
        ({"winner_id": 0, "loser_id": 2}, 422, "invalid"),
    ],
)
def test_bad_merge_is_refused_and_changes_nothing(
    admin: TestClient, stored: Snapshot, body: dict[str, Any], status: int, code: str
) -> None:
    make(admin, email="one@example.com")
    make(admin, email="two@example.com")
    before = stored()
    response = admin.post("/api/contacts/merge", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert stored() == before


def test_merging_an_already_merged_contact_is_409(
    admin: TestClient, stored: Snapshot, pair: tuple[int, int]
) -> None:
    winner, loser = pair
    merge(admin, winner, loser)
    before = stored()
    for again in (merge(admin, winner, loser), merge(admin, loser, winner)):
        assert again.status_code == 409
        error = again.json()["error"]
        assert error["code"] == "already_merged"
        assert error["details"]["merged_into"] == winner
    assert stored() == before


def test_malformed_merge_body_is_400(admin: TestClient, stored: Snapshot) -> None:
    before = stored()
    response = admin.post(
        "/api/contacts/merge", content=b"{winner", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert stored() == before


def test_a_failing_step_rolls_the_whole_merge_back(
    engine: Engine, clock: FrozenClock, admin: TestClient, pair: tuple[int, int], stored: Snapshot
) -> None:
    winner, loser = pair

    def refuse(ctx: MergeContext) -> None:
        raise Invalid("a later capability refuses this merge")

    before = stored()
    MERGE_STEPS.append(refuse)
    try:
        with pytest.raises(Invalid), engine.begin() as conn:
            merge_contacts(conn, clock, winner_id=winner, loser_id=loser, merged_by="test")
    finally:
        MERGE_STEPS.remove(refuse)
    assert stored() == before


def test_suppression_survives_the_merge(admin: TestClient) -> None:
    winner = make(admin, email="w@example.com")
    loser = make(admin, email="l@example.com")
    admin.post(f"/api/contacts/{loser}/suppress", json={"reason": "complaint"})
    merged = merge(admin, winner, loser).json()["winner"]
    assert merged["suppression_reason"] == "complaint"
    assert merged["suppressed_at"] is not None


def test_cli_merges_and_reports_errors(
    admin: TestClient, db_url: str, monkeypatch: pytest.MonkeyPatch, stored: Snapshot
) -> None:
    winner = make(admin, email="w@example.com", tags=["a"])
    loser = make(admin, email="l@example.com", tags=["b"])
    monkeypatch.setenv("EKIDEN_DATABASE_URL", db_url)
    runner = CliRunner()
    before = stored()
    bad = runner.invoke(cli_app, ["contacts", "merge", str(winner), str(winner)])
    assert bad.exit_code != 0
    assert "cannot be merged with itself" in bad.output
    missing = runner.invoke(cli_app, ["contacts", "merge", str(winner), "999"])
    assert missing.exit_code != 0
    assert "no contact with id 999" in missing.output
    assert stored() == before
    done = runner.invoke(cli_app, ["contacts", "merge", str(winner), str(loser)])
    assert done.exit_code == 0, done.output
    assert admin.get(f"/api/contacts/{winner}").json()["tags"] == ["a", "b"]
    assert admin.get(f"/api/contacts/{loser}").json()["error"]["code"] == "merged"
