"""CSV export of contacts and events: round trip, encodings, filters, injection, CLI, REST."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.contacts.customfields import CustomFieldDefinition, define_field
from ekiden.contacts.exporter import safe_cell
from ekiden.contacts.importer import ImportOptions, run_import
from ekiden.contacts.tables import contacts
from ekiden.tracking.events import NewEvent, record_events

CARDS = (
    "氏名,会社名,役職,メールアドレス,電話番号,タグ,予算,関心\r\n"
    "山田 太郎,株式会社サンプル,部長,taro@example.jp,+81-3-1234-5678,展示会2026;VIP,120,CRM;MA\r\n"
    '佐藤 花子,"=HYPERLINK(""http://evil"")",@課長,hanako@example.jp,,展示会2026,-5,MA\r\n'
)


@pytest.fixture
def seeded(engine: Engine, clock: FrozenClock) -> dict[str, int]:
    """Two imported contacts with custom fields and tags, and a few events."""
    with engine.begin() as conn:
        define_field(conn, clock, CustomFieldDefinition(key="budget", label="予算", type="integer"))
        define_field(
            conn,
            clock,
            CustomFieldDefinition(
                key="interest", label="関心", type="multi_choice", choices=["CRM", "MA", "SFA"]
            ),
        )
        run_import(
            conn,
            clock,
            CARDS.encode("cp932"),
            filename="cards.csv",
            options=ImportOptions(consent="granted", consent_text="同意します"),
        )
        ids = {r.email: r.id for r in conn.execute(select(contacts.c.email, contacts.c.id))}
        later = clock.now() + timedelta(days=1)
        record_events(
            conn,
            clock,
            [
                NewEvent(
                    type="page",
                    occurred_at=later,
                    source="browser",
                    contact_id=ids["taro@example.jp"],
                    path="/pricing",
                    dwell_ms=4200,
                    properties={"title": "料金"},
                    context={"ip": "192.0.2.1"},
                ),
                NewEvent(
                    type="page",
                    occurred_at=later + timedelta(hours=1),
                    source="browser",
                    anonymous_id="anon-1",
                    path="/case-studies",
                    machine=True,
                ),
                NewEvent(
                    type="whitepaper_download",
                    occurred_at=later + timedelta(hours=2),
                    source="api",
                    contact_id=ids["hanako@example.jp"],
                    properties={"doc": "=cmd"},
                ),
            ],
        )
    return ids


def run_cli(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args), env={"EKIDEN_DATABASE_URL": db_url})


def parse(data: bytes, encoding: str = "utf-8") -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(encoding), newline="")))


def test_contact_export_round_trip(db_url: str, seeded: dict[str, int]) -> None:
    result = run_cli(db_url, "export", "contacts")
    assert result.exit_code == 0, result.output
    rows = {r["email"]: r for r in parse(result.stdout_bytes)}
    taro = rows["taro@example.jp"]
    assert int(taro["id"]) == seeded["taro@example.jp"]
    assert (taro["last_name"], taro["first_name"], taro["company"]) == (
        "山田",
        "太郎",
        "株式会社サンプル",
    )
    assert taro["tags"] == "VIP;展示会2026"
    assert taro["email_consent"] == "granted"
    assert taro["custom.budget"] == "120"
    assert taro["custom.interest"] == "CRM;MA"
    assert taro["source_kind"] == "import"
    assert taro["created_at"] == "2026-11-02T00:00:00Z"
    # a phone number with + is a formula to Excel: escaped; a plain number is not
    assert taro["phone"] == "'+81-3-1234-5678"
    hanako = rows["hanako@example.jp"]
    assert hanako["company"] == '\'=HYPERLINK("http://evil")'
    assert hanako["job_title"] == "'@課長"
    assert hanako["custom.budget"] == "-5"


def test_exported_file_imports_back_unchanged(
    db_url: str, engine: Engine, clock: FrozenClock, seeded: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "contacts.csv"
    assert run_cli(db_url, "export", "contacts", "-o", str(out)).exit_code == 0
    with engine.connect() as conn:
        before = conn.execute(select(contacts).order_by(contacts.c.id)).mappings().all()
    with engine.begin() as conn:
        report = run_import(
            conn,
            clock,
            out.read_bytes(),
            filename="contacts.csv",
            options=ImportOptions(ignore_unknown=True),
        )
    assert (report.rows_updated, report.rows_invalid) == (2, 0)
    with engine.connect() as conn:
        after = conn.execute(select(contacts).order_by(contacts.c.id)).mappings().all()
    skip = {"updated_at"}
    assert [{k: v for k, v in r.items() if k not in skip} for r in after] == [
        {k: v for k, v in r.items() if k not in skip} for r in before
    ]


@pytest.mark.parametrize(
    ("encoding", "prefix", "codec"),
    [("utf-8-sig", b"\xef\xbb\xbf", "utf-8-sig"), ("cp932", "氏".encode("cp932")[:0], "cp932")],
)
def test_contact_export_for_excel(
    db_url: str, seeded: dict[str, int], encoding: str, prefix: bytes, codec: str
) -> None:
    result = run_cli(db_url, "export", "contacts", "--encoding", encoding)
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes.startswith(prefix + b"id,email")
    rows = parse(result.stdout_bytes, codec)
    assert {r["last_name"] for r in rows} == {"山田", "佐藤"}


def test_cp932_export_warns_about_characters_it_cannot_hold(
    db_url: str, engine: Engine, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        run_import(
            conn,
            clock,
            "email,会社名\nemoji@example.com,カフェ☕\n".encode(),
            filename="x.csv",
            options=ImportOptions(),
        )
    result = run_cli(db_url, "export", "contacts", "--encoding", "cp932")
    assert result.exit_code == 0
    assert parse(result.stdout_bytes, "cp932")[0]["company"] == "カフェ?"
    assert "1 characters cannot be written in cp932" in result.stderr


def test_event_export_columns_and_filters(db_url: str, seeded: dict[str, int]) -> None:
    everything = parse(run_cli(db_url, "export", "events").stdout_bytes)
    types = [r["type"] for r in everything]
    assert types.count("contact_imported") == 2
    page = next(r for r in everything if r["path"] == "/pricing")
    assert page["occurred_at"] == "2026-11-03T00:00:00Z"
    assert (page["dwell_ms"], page["machine"], page["contact_id"]) == (
        "4200",
        "false",
        str(seeded["taro@example.jp"]),
    )
    assert json.loads(page["properties"]) == {"title": "料金"}
    assert json.loads(page["context"]) == {"ip": "192.0.2.1"}
    download = next(r for r in everything if r["type"] == "whitepaper_download")
    assert download["properties"] == '{"doc":"=cmd"}'  # JSON text starts with {, no escaping

    def ids(*args: str) -> list[str]:
        result = run_cli(db_url, "export", "events", *args)
        assert result.exit_code == 0, result.output
        return [r["path"] or r["type"] for r in parse(result.stdout_bytes)]

    assert ids("--type", "page") == ["/pricing", "/case-studies"]
    assert ids("--since", "2026-11-03T00:30:00Z") == ["/case-studies", "whitepaper_download"]
    assert ids("--since", "2026-11-03T09:00:00+09:00", "--until", "2026-11-03T01:00:00Z") == [
        "/pricing"
    ]
    assert ids("--contact", str(seeded["hanako@example.jp"])) == [
        "contact_imported",
        "whitepaper_download",
    ]


def test_event_export_refuses_a_time_without_offset(db_url: str, seeded: dict[str, int]) -> None:
    result = run_cli(db_url, "export", "events", "--since", "2026-11-03T00:00:00")
    assert result.exit_code == 2
    assert "time zone offset" in result.stderr
    assert run_cli(db_url, "export", "events", "--since", "yesterday").exit_code == 2
    assert run_cli(db_url, "export", "contacts", "--encoding", "latin-1").exit_code == 2


def test_export_streams_more_than_one_chunk(
    db_url: str, engine: Engine, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        record_events(
            conn,
            clock,
            [
                NewEvent(type="page", occurred_at=clock.now(), source="api", anonymous_id=f"a{i}")
                for i in range(4500)
            ],
        )
    rows = parse(run_cli(db_url, "export", "events").stdout_bytes)
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert len({r["anonymous_id"] for r in rows}) == 4500


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+81 3", "'+81 3"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("-5", "-5"),
        ("+12.5", "+12.5"),
        ("山田", "山田"),
        ("a=b", "a=b"),
    ],
)
def test_formula_like_cells_are_defused(value: str, expected: str) -> None:
    assert safe_cell(value) == expected


def test_rest_exports_stream_csv(admin: TestClient, seeded: dict[str, int]) -> None:
    contacts_csv = admin.get("/api/export/contacts.csv", params={"encoding": "utf-8-sig"})
    assert contacts_csv.status_code == 200
    assert contacts_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in contacts_csv.headers["content-disposition"]
    assert {r["email"] for r in parse(contacts_csv.content, "utf-8-sig")} == set(seeded)
    events_csv = admin.get("/api/export/events.csv", params={"type": "page"})
    assert events_csv.status_code == 200
    assert [r["path"] for r in parse(events_csv.content)] == ["/pricing", "/case-studies"]
    bad = admin.get("/api/export/events.csv", params={"since": "2026-11-03"})
    assert bad.status_code == 422
    assert "offset" in bad.json()["error"]["message"]
    assert admin.get("/api/export/contacts.csv", params={"encoding": "latin-1"}).status_code == 422


def test_rest_exports_need_an_admin_key(client: TestClient, ingest_key: str) -> None:
    for path in ("/api/export/contacts.csv", "/api/export/events.csv"):
        assert client.get(path).status_code == 401
    client.headers["Authorization"] = f"Bearer {ingest_key}"
    for path in ("/api/export/contacts.csv", "/api/export/events.csv"):
        assert client.get(path).status_code == 403
