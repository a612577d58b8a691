"""CSV import of contacts: encodings, mapping, line numbers, modes, updates, consent, CLI, REST."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.contacts.consent import unsubscribe
from ekiden.contacts.customfields import CustomFieldDefinition, define_field
from ekiden.contacts.importer import ImportOptions, ImportRejected, ImportReport, run_import
from ekiden.contacts.tables import consents, contact_tags, contacts, imports
from ekiden.errors import Invalid
from ekiden.tracking.tables import events

CARDS = (
    "氏名,フリガナ,会社名,部署,役職,メールアドレス,電話番号,タグ\r\n"
    "山田 太郎,ヤマダ タロウ,株式会社サンプル,営業部,部長,taro@example.jp,03-1234-5678,"
    "展示会2026;VIP\r\n"
    "佐藤　花子,サトウ ハナコ,㈱テスト,マーケティング部,課長,hanako@example.jp,,展示会2026\r\n"
)


def do_import(engine: Engine, clock: FrozenClock, data: bytes, **options: Any) -> ImportReport:
    with engine.begin() as conn:
        return run_import(conn, clock, data, filename="cards.csv", options=ImportOptions(**options))


def contact_rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(contacts).order_by(contacts.c.id)).mappings().all()
    return {r["email"]: r for r in rows}


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (CARDS.encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + CARDS.encode("utf-8"), "utf-8-sig"),
        (CARDS.encode("cp932"), "cp932"),
    ],
    ids=["utf-8", "utf-8-bom", "shift_jis"],
)
def test_business_cards_import_in_every_encoding(
    engine: Engine, clock: FrozenClock, encoded: bytes, expected: str
) -> None:
    report = do_import(engine, clock, encoded)
    assert (report.encoding, report.rows_created, report.rows_invalid) == (expected, 2, 0)
    stored = contact_rows(engine)
    taro = stored["taro@example.jp"]
    assert (taro["last_name"], taro["first_name"]) == ("山田", "太郎")
    assert (taro["last_name_kana"], taro["first_name_kana"]) == ("ヤマダ", "タロウ")
    assert (taro["company"], taro["department"], taro["job_title"]) == (
        "株式会社サンプル",
        "営業部",
        "部長",
    )
    assert taro["source_kind"] == "import"
    assert taro["source_ref"] == f"import:{report.import_id}"
    hanako = stored["hanako@example.jp"]
    # a full-width space separates family and given name too; ㈱ exists only in CP932
    assert (hanako["last_name"], hanako["first_name"], hanako["company"]) == (
        "佐藤",
        "花子",
        "㈱テスト",
    )
    with engine.connect() as conn:
        tags = conn.execute(
            select(contact_tags.c.tag).where(contact_tags.c.contact_id == taro["id"])
        ).scalars()
        assert sorted(tags) == ["VIP", "展示会2026"]
        imported = conn.execute(
            select(events.c.contact_id, events.c.properties, events.c.source).where(
                events.c.type == "contact_imported"
            )
        ).all()
    assert {(e.contact_id, e.source) for e in imported} == {
        (taro["id"], "import"),
        (hanako["id"], "import"),
    }
    assert all(e.properties["import_id"] == report.import_id for e in imported)


def test_dry_run_reports_every_invalid_row_with_physical_line_and_stores_nothing(
    engine: Engine, clock: FrozenClock
) -> None:
    text = (
        "email,氏名,会社名,memo\r\n"  # line 1
        'ok@example.com,山田 太郎,"Multi\r\nline\r\ncompany",x\r\n'  # lines 2-4
        "not-an-email,佐藤 花子,A,y\r\n"  # line 5
        ',鈴木 一郎,"B\nC",z\r\n'  # lines 6-7: missing email
        "ok@Example.COM,dup,D,w\r\n"  # line 8: same address (domain case) as line 2
        "fine@example.com,,E,v,extra\r\n"  # line 9: too many cells
    )
    report = do_import(
        engine,
        clock,
        text.encode("cp932"),
        dry_run=True,
        mapping={"memo": "ignore"},
    )
    assert [(e.line, e.reason.split(":")[0]) for e in report.errors] == [
        (5, "invalid email address 'not-an-email'"),
        (6, "missing email"),
        (8, "duplicate email"),
        (9, "the row has 5 cells but the header has 4 columns"),
    ]
    assert report.errors[2].reason == "duplicate email: already on line 2"
    assert (report.rows_total, report.rows_invalid, report.rows_created) == (5, 4, 1)
    assert report.stored is False
    assert report.import_id is None
    assert count(engine, contacts) == 0
    assert count(engine, imports) == 0


def test_all_or_nothing_with_one_bad_row_stores_nothing(engine: Engine, clock: FrozenClock) -> None:
    data = (CARDS + "田中 次郎,,,,,broken@,,\r\n").encode("utf-8")
    with pytest.raises(ImportRejected) as caught:
        do_import(engine, clock, data)
    assert [e.line for e in caught.value.report.errors] == [4]
    assert caught.value.status == 422
    assert (count(engine, contacts), count(engine, imports), count(engine, events)) == (0, 0, 0)


def test_valid_rows_mode_stores_only_the_valid_rows(engine: Engine, clock: FrozenClock) -> None:
    data = (CARDS + "田中 次郎,,,,,broken@,,\r\n").encode("utf-8")
    report = do_import(engine, clock, data, mode="valid-rows")
    assert (report.rows_created, report.rows_invalid, report.stored) == (2, 1, True)
    assert set(contact_rows(engine)) == {"taro@example.jp", "hanako@example.jp"}
    with engine.connect() as conn:
        stored = conn.execute(select(imports)).mappings().one()
    assert (stored["mode"], stored["encoding"], stored["rows_invalid"]) == (
        "valid_rows",
        "utf-8",
        1,
    )
    assert stored["errors"][0]["line"] == 4
    assert stored["mapping"]["氏名"] == "full_name"


def test_reimport_updates_without_clearing_stored_values(
    engine: Engine, clock: FrozenClock
) -> None:
    with engine.begin() as conn:
        define_field(conn, clock, CustomFieldDefinition(key="budget", label="予算", type="integer"))
    do_import(
        engine,
        clock,
        "email,姓,名,会社名,役職,予算\ntaro@example.jp,山田,太郎,サンプル,課長,100\n".encode(),
    )
    first = contact_rows(engine)["taro@example.jp"]
    report = do_import(
        engine,
        clock,
        "email,姓,名,会社名,役職,予算\ntaro@example.jp,,,,部長,\n".encode(),
        tags=["展示会2027"],
    )
    assert (report.rows_created, report.rows_updated) == (0, 1)
    again = contact_rows(engine)["taro@example.jp"]
    assert again["id"] == first["id"]
    assert (again["last_name"], again["first_name"], again["company"]) == (
        "山田",
        "太郎",
        "サンプル",
    )
    assert again["job_title"] == "部長"
    assert again["custom"] == {"budget": 100}
    # the contact keeps the import it first came from
    assert again["source_ref"] == first["source_ref"]


def test_custom_values_are_validated_per_row(engine: Engine, clock: FrozenClock) -> None:
    with engine.begin() as conn:
        define_field(conn, clock, CustomFieldDefinition(key="budget", label="予算", type="integer"))
    data = b"email,custom.budget\na@example.com,12\nb@example.com,lots\n"
    report = do_import(engine, clock, data, dry_run=True)
    assert [(e.line, e.reason) for e in report.errors] == [
        (3, "custom.budget must be a whole number")
    ]


@pytest.mark.parametrize(
    "data",
    [
        "email,名前\na@example.com,山田\n".encode("utf-16"),
        "email,名前\na@example.com,山田\n".encode("utf-16-le"),
        b"email,name\na@example.com,\x81\x20\xff\xfe\n",
    ],
    ids=["utf-16-bom", "utf-16-no-bom", "random-bytes"],
)
def test_a_file_in_a_wrong_encoding_is_refused_clearly(
    engine: Engine, clock: FrozenClock, data: bytes
) -> None:
    with pytest.raises(Invalid) as caught:
        do_import(engine, clock, data)
    assert caught.value.code == "bad_encoding"
    assert "UTF-16" in caught.value.message or "line 2" in caught.value.message
    assert count(engine, contacts) == 0


def test_explicit_encoding_names_the_first_bad_byte(engine: Engine, clock: FrozenClock) -> None:
    with pytest.raises(Invalid, match=r"not valid UTF-8: byte 11 \(line 2, value 0x8e"):
        do_import(engine, clock, "email,name\n山田\n".encode("cp932"), encoding="utf-8")


def test_unknown_columns_are_listed_unless_mapped_or_ignored(
    engine: Engine, clock: FrozenClock
) -> None:
    data = "email,好きな色,Fax\na@example.com,青,1\n".encode()
    with pytest.raises(Invalid, match="unknown columns: 好きな色, Fax"):
        do_import(engine, clock, data)
    report = do_import(engine, clock, data, mapping={"好きな色": "ignore", "Fax": "phone"})
    assert report.mapping == {"email": "email", "好きな色": "ignore", "Fax": "phone"}
    assert contact_rows(engine)["a@example.com"]["phone"] == "1"
    assert do_import(engine, clock, data, ignore_unknown=True).rows_updated == 1


def test_consent_granted_needs_its_text_and_is_recorded(engine: Engine, clock: FrozenClock) -> None:
    with pytest.raises(ValueError, match="consent text"):
        ImportOptions(consent="granted")
    with engine.begin() as conn:
        conn.execute(
            contacts.insert().values(
                email="hanako@example.jp", custom={}, created_at=clock.now(), updated_at=clock.now()
            )
        )
        hanako_id = conn.execute(select(contacts.c.id)).scalar_one()
        unsubscribe(conn, clock, hanako_id)
    wording = "展示会で配布資料の送付とメールマガジンの配信に同意しました"
    report = do_import(engine, clock, CARDS.encode(), consent="granted", consent_text=wording)
    stored = contact_rows(engine)
    assert stored["taro@example.jp"]["email_consent"] == "granted"
    # an earlier opt-out is never overridden by a business card
    assert stored["hanako@example.jp"]["email_consent"] == "withdrawn"
    assert [w.line for w in report.warnings] == [3]
    with engine.connect() as conn:
        granted = conn.execute(select(consents).where(consents.c.status == "granted")).mappings()
        rows = list(granted)
    assert [(r["source"], r["source_ref"], r["text_shown"]) for r in rows] == [
        ("import", f"import:{report.import_id}", wording)
    ]


def test_mapping_file_and_header_errors(engine: Engine, clock: FrozenClock) -> None:
    with pytest.raises(Invalid, match="no column maps to email"):
        do_import(engine, clock, b"name,company\nA,B\n")
    with pytest.raises(Invalid, match="file does not have: Mail"):
        do_import(engine, clock, b"email\na@example.com\n", mapping={"Mail": "email"})
    with pytest.raises(Invalid, match=r"unknown target fields: custom\.nope"):
        do_import(engine, clock, b"email,x\na@example.com,1\n", mapping={"x": "custom.nope"})
    with pytest.raises(Invalid, match="same field: email"):
        do_import(engine, clock, "email,メールアドレス\na@example.com,b@example.com\n".encode())
    with pytest.raises(Invalid, match="empty"):
        do_import(engine, clock, b"")
    with pytest.raises(Invalid, match="line 2: the CSV is malformed"):
        do_import(engine, clock, b'email,name\na@example.com,"open quote\n')


# --- CLI -----------------------------------------------------------------------------------


def run_cli(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args), env={"EKIDEN_DATABASE_URL": db_url})


def test_cli_import_dry_run_json_and_exit_codes(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes((CARDS + "田中 次郎,,,,,broken@,,\r\n").encode("cp932"))
    result = run_cli(db_url, "import", "contacts", str(bad), "--dry-run", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["encoding"], report["rows_invalid"], report["errors"][0]["line"]) == (
        "cp932",
        1,
        4,
    )
    assert "broken@" in result.stderr
    result = run_cli(db_url, "import", "contacts", str(bad))
    assert result.exit_code == 1
    assert "nothing was imported" in result.stderr
    assert count(engine, contacts) == 0
    result = run_cli(
        db_url, "import", "contacts", str(bad), "--mode", "valid-rows", "--tag", "expo"
    )
    assert result.exit_code == 0, result.output
    assert count(engine, contacts) == 2


def test_cli_import_refuses_bad_options(db_url: str, engine: Engine, tmp_path: Path) -> None:
    good = tmp_path / "cards.csv"
    good.write_bytes(CARDS.encode())
    result = run_cli(db_url, "import", "contacts", str(good), "--consent", "granted")
    assert result.exit_code == 2
    assert "consent text" in result.stderr
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("タグ: ignore\n電話番号: ignore\n", encoding="utf-8")
    result = run_cli(
        db_url, "import", "contacts", str(good), "--mapping", str(mapping), "--map", "部署=ignore"
    )
    assert result.exit_code == 0, result.output
    taro = contact_rows(engine)["taro@example.jp"]
    assert (taro["phone"], taro["department"]) == (None, None)
    missing = run_cli(db_url, "import", "contacts", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2


# --- REST ----------------------------------------------------------------------------------


def upload(client: TestClient, data: bytes, **fields: Any) -> Any:
    return client.post(
        "/api/imports/contacts", files={"file": ("cards.csv", data, "text/csv")}, data=fields
    )


def test_rest_dry_run_then_import_then_read_it_back(admin: TestClient, engine: Engine) -> None:
    data = (CARDS + "田中 次郎,,,,,broken@,,\r\n").encode("cp932")
    dry = upload(admin, data, dry_run="true")
    assert dry.status_code == 200
    assert dry.json()["errors"][0]["line"] == 4
    rejected = upload(admin, data)
    assert rejected.status_code == 422
    assert rejected.json()["error"]["code"] == "invalid_rows"
    assert rejected.json()["error"]["details"]["errors"][0]["line"] == 4
    assert count(engine, contacts) == 0
    done = upload(
        admin, data, mode="valid-rows", tag=["expo", "2026"], mapping=json.dumps({"タグ": "tags"})
    )
    assert done.status_code == 201, done.text
    import_id = done.json()["import_id"]
    stored = admin.get(f"/api/imports/{import_id}")
    assert stored.status_code == 200
    assert stored.json()["rows_created"] == 2
    assert stored.json()["mode"] == "valid-rows"
    assert stored.json()["errors"][0]["line"] == 4
    assert admin.get("/api/imports/999").status_code == 404


def test_rest_upload_refuses_bad_requests(admin: TestClient) -> None:
    assert admin.post("/api/imports/contacts", data={"mode": "valid-rows"}).status_code == 422
    bad_option = upload(admin, CARDS.encode(), mode="sometimes")
    assert bad_option.status_code == 422
    assert "mode" in bad_option.json()["error"]["message"]
    consent = upload(admin, CARDS.encode(), consent="granted")
    assert consent.status_code == 422
    assert "consent text" in consent.json()["error"]["message"]
    unknown = upload(admin, CARDS.encode(), colour="blue")
    assert unknown.status_code == 422
    wrong = upload(admin, "email\na@example.com\n".encode("utf-16"))
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "bad_encoding"
    huge = upload(admin, b"email\n" + b"a" * (21 * 1024 * 1024))
    assert huge.status_code == 413


def test_rest_import_needs_an_admin_key(
    client: TestClient, ingest_key: str, engine: Engine
) -> None:
    assert upload(client, CARDS.encode()).status_code == 401
    client.headers["Authorization"] = f"Bearer {ingest_key}"
    assert upload(client, CARDS.encode()).status_code == 403
    assert client.get("/api/imports/1").status_code == 403
    assert count(engine, contacts) == 0
