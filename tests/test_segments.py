"""Dynamic segments and static lists: stored membership that follows changes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events
from ekiden.worker import Worker

BUCHO_PRICING = {
    "all": [
        {"field": "job_title", "op": "in", "value": ["部長", "本部長"]},
        {
            "event": "page",
            "where": [{"property": "path", "op": "starts_with", "value": "/pricing"}],
            "min": 2,
            "within_days": 30,
        },
        {"field": "unsubscribed", "op": "eq", "value": False},
    ]
}


def person(engine: Engine, clock: FrozenClock, email: str, **fields: Any) -> int:
    with engine.begin() as conn:
        return upsert_contact(
            conn, clock, email=email, changes=ContactChanges(**fields), source_kind="api"
        ).contact_id


def visit(
    engine: Engine, clock: FrozenClock, contact_id: int, path: str, *, machine: bool = False
) -> None:
    with engine.begin() as conn:
        record_events(
            conn,
            clock,
            [NewEvent(type="page", occurred_at=clock.now(), source="api", contact_id=contact_id,
                      path=path, machine=machine)],
        )  # fmt: skip


def members(engine: Engine, slug: str, admin: TestClient) -> set[str]:
    page = admin.get(f"/api/segments/{slug}/members?limit=500").json()
    return {m["email"] for m in page["items"]}


def history(engine: Engine, contact_id: int) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(events.c.type)
            .where(events.c.contact_id == contact_id, events.c.type.like("segment_%"))
            .order_by(events.c.id)
        )
        return list(rows.scalars())


@pytest.fixture
def worker(engine: Engine, clock: FrozenClock, settings: Settings) -> Worker:
    return Worker(engine, clock, settings)


def test_segment_is_built_on_creation_and_matches_preview(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    bucho = person(engine, clock, "bucho@example.jp", job_title="部長")
    kacho = person(engine, clock, "kacho@example.jp", job_title="課長")
    for contact in (bucho, kacho):
        visit(engine, clock, contact, "/pricing")
        visit(engine, clock, contact, "/pricing/enterprise")
    preview = admin.post("/api/segments/preview", json={"filter": BUCHO_PRICING})
    assert preview.status_code == 200
    assert preview.json() == {"count": 1, "sample": [bucho]}

    created = admin.post(
        "/api/segments",
        json={"slug": "hot-bucho", "name": "料金ページ部長", "filter": BUCHO_PRICING},
    )
    assert created.status_code == 201, created.text
    assert created.json()["member_count"] == 1
    assert created.json()["built"] is True
    assert members(engine, "hot-bucho", admin) == {"bucho@example.jp"}
    assert history(engine, bucho) == ["segment_entered"]
    assert history(engine, kacho) == []


def test_new_behaviour_enters_and_time_exits_incrementally(
    engine: Engine, clock: FrozenClock, admin: TestClient, worker: Worker
) -> None:
    bucho = person(engine, clock, "bucho@example.jp", job_title="本部長")
    admin.post("/api/segments", json={"slug": "hot", "name": "hot", "filter": BUCHO_PRICING})
    worker.run_once()
    visit(engine, clock, bucho, "/pricing")
    assert worker.run_once().entered == 0
    visit(engine, clock, bucho, "/pricing", machine=True)  # a scanner does not count (R9)
    assert worker.run_once().entered == 0
    clock.advance(timedelta(days=1))
    visit(engine, clock, bucho, "/pricing")
    report = worker.run_once()
    assert report.contacts_refreshed == 1
    assert report.entered == 1
    assert members(engine, "hot", admin) == {"bucho@example.jp"}

    # 30 days after the first visit only one visit is left in the window: the contact leaves
    clock.advance(timedelta(days=29, hours=1))
    assert worker.run_once().exited == 1
    assert members(engine, "hot", admin) == set()
    assert history(engine, bucho) == ["segment_entered", "segment_exited"]


def test_changing_a_contact_field_moves_membership(
    engine: Engine, clock: FrozenClock, admin: TestClient, worker: Worker
) -> None:
    contact = person(engine, clock, "a@example.jp", job_title="課長")
    admin.post(
        "/api/segments",
        json={
            "slug": "managers",
            "name": "部長",
            "filter": {"field": "job_title", "op": "eq", "value": "部長"},
        },
    )
    assert members(engine, "managers", admin) == set()
    with engine.begin() as conn:
        upsert_contact(conn, clock, email="a@example.jp", changes=ContactChanges(job_title="部長"),
                       source_kind="api")  # fmt: skip
    worker.run_once()
    assert members(engine, "managers", admin) == {"a@example.jp"}
    assert history(engine, contact) == ["segment_entered"]


def test_segment_of_segment_and_list_membership(
    engine: Engine, clock: FrozenClock, admin: TestClient, worker: Worker
) -> None:
    a = person(engine, clock, "a@example.jp", job_title="部長")
    person(engine, clock, "b@example.jp", job_title="部長")
    admin.post("/api/lists", json={"slug": "expo-2026", "name": "展示会 2026"})
    admin.post("/api/segments", json={"slug": "bucho", "name": "部長",
               "filter": {"field": "job_title", "op": "eq", "value": "部長"}})  # fmt: skip
    both = {"all": [{"segment": "bucho"}, {"list": "expo-2026"}]}
    made = admin.post(
        "/api/segments", json={"slug": "expo-bucho", "name": "展示会の部長", "filter": both}
    )
    assert made.status_code == 201, made.text
    assert made.json()["member_count"] == 0

    added = admin.post(
        "/api/lists/expo-2026/members", json={"emails": ["a@example.jp", "x@nowhere.jp"]}
    )
    assert added.json() == {"changed": 1, "unknown_emails": ["x@nowhere.jp"]}
    worker.run_once()
    assert members(engine, "expo-bucho", admin) == {"a@example.jp"}
    assert admin.get("/api/lists/expo-2026").json()["member_count"] == 1

    removed = admin.post("/api/lists/expo-2026/members/remove", json={"contact_ids": [a]})
    assert removed.json()["changed"] == 1
    worker.run_once()
    assert members(engine, "expo-bucho", admin) == set()


def test_definition_change_rebuilds_with_exit_events(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    a = person(engine, clock, "a@example.jp", industry="製造業")
    admin.post("/api/segments", json={"slug": "mfg", "name": "製造業",
               "filter": {"field": "industry", "op": "eq", "value": "製造業"}})  # fmt: skip
    changed = admin.patch(
        "/api/segments/mfg", json={"filter": {"field": "industry", "op": "eq", "value": "小売"}}
    )
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    assert changed.json()["member_count"] == 0
    assert history(engine, a) == ["segment_entered", "segment_exited"]


@pytest.mark.parametrize(
    ("slug", "flt", "fragment"),
    [
        ("x", {"field": "nope", "op": "eq", "value": 1}, "unknown field 'nope'"),
        ("x", {"all": [{"field": "job_title", "op": "gt"}]}, "all[0]"),
        ("x", {"segment": "missing"}, "no segment 'missing'"),
        ("x", {"segment": "x"}, "cycle"),
        ("x", {"field": "created_at", "op": "gt", "value": "2026-02-30"}, "not a valid date"),
        ("x", {"event": "page", "min": 3, "max": 1}, "min is larger than max"),
        ("Bad Slug", {}, "slug"),
    ],
)
def test_bad_definitions_are_refused_with_the_offending_part(
    admin: TestClient, slug: str, flt: dict[str, Any], fragment: str
) -> None:
    status = 422
    response = admin.post("/api/segments", json={"slug": slug, "name": "x", "filter": flt})
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]["message"]
    assert admin.get("/api/segments").json()["items"] == []


def test_cycle_through_an_update_is_refused(admin: TestClient) -> None:
    admin.post("/api/segments", json={"slug": "a", "name": "a", "filter": {"tag": "x"}})
    admin.post("/api/segments", json={"slug": "b", "name": "b", "filter": {"segment": "a"}})
    response = admin.patch("/api/segments/a", json={"filter": {"segment": "b"}})
    assert response.status_code == 422
    assert "a -> b -> a" in response.json()["error"]["message"]
    assert admin.get("/api/segments/a").json()["filter"] == {"tag": "x"}
    assert admin.delete("/api/segments/a").status_code == 409  # b refers to it


def test_members_csv_streams_every_member(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    for i in range(12):
        person(
            engine,
            clock,
            f"p{i}@example.jp",
            company="=HYPERLINK(1)" if i == 0 else "株式会社テスト",
        )
    admin.post("/api/segments", json={"slug": "all", "name": "全員", "filter": {"all": []}})
    response = admin.get("/api/segments/all/members.csv")
    assert response.status_code == 200
    lines = response.text.strip().splitlines()
    assert lines[0] == "id,email,last_name,first_name,company,job_title,since"
    assert len(lines) == 13
    assert "'=HYPERLINK(1)" in response.text
    page = admin.get("/api/segments/all/members?limit=5").json()
    assert len(page["items"]) == 5
    assert page["next"]
    rest = admin.get(f"/api/segments/all/members?limit=500&cursor={page['next']}").json()
    assert len(rest["items"]) == 7
    assert rest["next"] is None
    assert admin.get("/api/segments/all/members?cursor=garbage").status_code == 400


def test_unknown_contact_ids_add_nothing_to_a_list(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    a = person(engine, clock, "a@example.jp")
    admin.post("/api/lists", json={"slug": "l", "name": "l"})
    response = admin.post("/api/lists/l/members", json={"contact_ids": [a, 99999]})
    assert response.status_code == 422
    assert "99999" in response.json()["error"]["message"]
    assert admin.get("/api/lists/l").json()["member_count"] == 0
    assert admin.post("/api/lists", json={"slug": "l", "name": "again"}).status_code == 409


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/segments", {"slug": "s", "name": "s", "filter": {}}),
        ("post", "/api/segments/preview", {"filter": {}}),
        ("patch", "/api/segments/s", {"name": "t"}),
        ("delete", "/api/segments/s", None),
        ("post", "/api/segments/s/refresh", None),
        ("post", "/api/lists", {"slug": "l", "name": "l"}),
        ("post", "/api/lists/l/members", {"contact_ids": [1]}),
        ("post", "/api/lists/l/members/remove", {"contact_ids": [1]}),
        ("delete", "/api/lists/l", None),
    ],
)
def test_segment_and_list_endpoints_need_an_admin_key(
    client: TestClient, ingest_key: str, method: str, path: str, body: Any
) -> None:
    kwargs = {"json": body} if body is not None else {}
    assert getattr(client, method)(path, **kwargs).status_code == 401
    with_ingest = getattr(client, method)(
        path, headers={"Authorization": f"Bearer {ingest_key}"}, **kwargs
    )
    assert with_ingest.status_code == 403


def test_cli_refresh_and_worker_once_with_simulated_time(
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin: TestClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = person(engine, clock, "a@example.jp", job_title="部長")
    visit(engine, clock, a, "/pricing")
    visit(engine, clock, a, "/pricing")
    admin.post("/api/segments", json={"slug": "hot", "name": "hot", "filter": BUCHO_PRICING})
    assert members(engine, "hot", admin) == {"a@example.jp"}
    monkeypatch.setenv("EKIDEN_DATABASE_URL", settings.database_url)
    runner = CliRunner()
    later = (clock.now() + timedelta(days=31)).isoformat()
    result = runner.invoke(cli_app, ["worker", "--once", "--now", later])
    assert result.exit_code == 0, result.output
    assert members(engine, "hot", admin) == set()
    result = runner.invoke(cli_app, ["segments", "refresh", "--all"])
    assert result.exit_code == 0, result.output
    assert "rebuilt 1 segment" in result.output
    bad = runner.invoke(cli_app, ["worker", "--now", later])
    assert bad.exit_code != 0
    assert "--now only goes with --once" in bad.output
    listed = runner.invoke(cli_app, ["segments", "list"])
    assert listed.exit_code == 0
    assert "hot" in listed.output


def test_merge_keeps_list_memberships_and_reevaluates_segments(
    engine: Engine, clock: FrozenClock, admin: TestClient, worker: Worker
) -> None:
    winner = person(engine, clock, "w@example.jp", job_title="部長")
    loser = person(engine, clock, "l@example.jp")
    visit(engine, clock, winner, "/pricing")
    visit(engine, clock, loser, "/pricing")  # the loser's visit completes the winner's pair
    admin.post("/api/lists", json={"slug": "expo", "name": "展示会"})
    admin.post("/api/lists/expo/members", json={"contact_ids": [loser]})
    admin.post("/api/segments", json={"slug": "hot", "name": "hot", "filter": BUCHO_PRICING})
    admin.post("/api/segments", json={"slug": "everyone", "name": "all", "filter": {"all": []}})
    assert members(engine, "hot", admin) == set()
    merged = admin.post("/api/contacts/merge", json={"winner_id": winner, "loser_id": loser})
    assert merged.status_code == 200, merged.text
    worker.run_once()
    assert members(engine, "hot", admin) == {"w@example.jp"}
    assert admin.get("/api/lists/expo/members").json()["items"][0]["id"] == winner
    assert admin.get("/api/segments/everyone").json()["member_count"] == 1
    assert members(engine, "everyone", admin) == {"w@example.jp"}


def test_list_members_from_a_shift_jis_csv(
    engine: Engine, clock: FrozenClock, admin: TestClient
) -> None:
    person(engine, clock, "a@example.jp")
    person(engine, clock, "b@example.jp")
    admin.post("/api/lists", json={"slug": "expo", "name": "展示会"})
    data = (
        "氏名,メールアドレス\r\n山田 太郎,a@example.jp\r\n"
        "鈴木 花子,nobody@example.jp\r\n,B@EXAMPLE.JP\r\n"
    )
    response = admin.post(
        "/api/lists/expo/members.csv",
        content=data.encode("cp932"),
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "changed": 1,
        "unknown_emails": ["nobody@example.jp", "B@EXAMPLE.JP"],
        "unknown_lines": [3, 4],
    }
    no_column = admin.post("/api/lists/expo/members.csv", content=b"name\nx\n")
    assert no_column.status_code == 422
    assert "email column" in no_column.json()["error"]["message"]
    removed = admin.post(
        "/api/lists/expo/members.csv?remove=true", content=b"email\na@example.jp\n"
    )
    assert removed.json()["changed"] == 1
    assert admin.get("/api/lists/expo").json()["member_count"] == 0


def test_a_failed_refresh_leaves_contacts_queued(
    engine: Engine, clock: FrozenClock, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ekiden.segments import service as segment_service
    from ekiden.segments.dirty import queued

    person(engine, clock, "a@example.jp", job_title="部長")
    with engine.begin() as conn:
        assert queued(conn) == 1

    def crash(*_: Any, **__: Any) -> Any:
        raise RuntimeError("worker died mid-batch")

    monkeypatch.setattr("ekiden.worker.refresh_contacts", crash)
    with pytest.raises(RuntimeError):
        worker.refresh_dirty_batch()
    with engine.begin() as conn:
        assert queued(conn) == 1  # the claim rolled back with the failed refresh
    monkeypatch.setattr("ekiden.worker.refresh_contacts", segment_service.refresh_contacts)
    assert worker.refresh_dirty_batch().contacts == 1
    with engine.begin() as conn:
        assert queued(conn) == 0


def test_concurrent_workers_claim_disjoint_batches(engine: Engine, clock: FrozenClock) -> None:
    from ekiden.segments.dirty import claim_dirty, mark_dirty

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time; SKIP LOCKED is PostgreSQL's")
    with engine.begin() as conn:
        mark_dirty(conn, clock, range(1, 101))
    first = engine.connect()
    second = engine.connect()
    try:
        with first.begin(), second.begin():
            one = claim_dirty(first, 60)
            two = claim_dirty(second, 60)  # must not wait for, nor take, the first's rows
            assert len(one) == 60
            assert len(two) == 40
            assert not set(one) & set(two)
    finally:
        first.close()
        second.close()
