"""The campaign and source effectiveness report on a small hand-built dataset: leads by
first-touch UTM, referrer domain, first form and import batch, the stages they reached (skips,
backward moves, merges, erasure), costs spread over their days, cost per lead / won deal and
ROI, attribution by first touch, last touch and linear, days in Asia/Tokyo; the campaign
costs API and CLI with their bad input; REST and CLI of the report."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, insert, literal, select
from tests.report_support import run_named
from typer.testing import CliRunner

from ekiden.analytics.campaigns import referrer_domain, url_host
from ekiden.analytics.costs import CostIn, create_cost, parse_amount
from ekiden.analytics.reports import Period, ReportResult
from ekiden.cli import app as cli_app
from ekiden.clock import FrozenClock
from ekiden.contacts.merge import merge_contacts
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import contacts, imports
from ekiden.errors import Invalid
from ekiden.lifecycle.automatic import enter_first_stages
from ekiden.lifecycle.models import MoveIn
from ekiden.lifecycle.moves import move_contact
from ekiden.tracking.events import NewEvent, record_events

TOKYO = ZoneInfo("Asia/Tokyo")
MARCH = Period(date(2026, 3, 1), date(2026, 3, 31), TOKYO)


def tokyo(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=TOKYO)


class Data:
    def __init__(self, engine: Engine, clock: FrozenClock) -> None:
        self.engine, self.clock = engine, clock

    def contact(self, email: str, when: datetime, **kw: Any) -> int:
        self.clock.set(when)
        with self.engine.begin() as conn:
            cid = upsert_contact(
                conn,
                self.clock,
                email=email,
                changes=ContactChanges(company=kw.pop("company", None)),
                source_kind=kw.pop("source_kind", "api"),
                source_ref=kw.pop("source_ref", None),
            ).contact_id
            enter_first_stages(conn, self.clock, [cid])
        return cid

    def move(self, cid: int, stage: str, when: datetime, **kw: Any) -> None:
        self.clock.set(when)
        with self.engine.begin() as conn:
            move_contact(conn, self.clock, cid, MoveIn(stage=stage, **kw), moved_by="test")

    def event(
        self, cid: int, kind: str, when: datetime, *, machine: bool = False, **props: Any
    ) -> None:
        with self.engine.begin() as conn:
            record_events(
                conn,
                self.clock,
                [
                    NewEvent(
                        type=kind,
                        occurred_at=when,
                        source="email" if kind.startswith("email_") else "browser",
                        contact_id=cid,
                        properties=props,
                        machine=machine,
                        machine_reason="test" if machine else None,
                    )
                ],
            )

    def page(self, cid: int, when: datetime, *, machine: bool = False, **props: Any) -> None:
        self.event(cid, "page", when, machine=machine, **props)


SPRING: dict[str, Any] = {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "spring"}
WEBINAR: dict[str, Any] = {
    "utm_source": "newsletter",
    "utm_medium": "email",
    "utm_campaign": "webinar",
}


@pytest.fixture
def data(engine: Engine, clock: FrozenClock) -> dict[str, int]:
    """The dataset the tests work out by hand (10:00 Tokyo unless said otherwise)."""
    d = Data(engine, clock)
    ids: dict[str, int] = {}
    # a: spring ad, then a webinar mail, a form, an email click; skips nurturing; won
    ids["a"] = d.contact("a@example.jp", tokyo(3, 2), company="Acme")
    d.page(ids["a"], tokyo(3, 1), **SPRING, referrer="https://www.google.com/search?q=ma")
    d.page(ids["a"], tokyo(3, 3), **WEBINAR)
    d.event(ids["a"], "form_submitted", tokyo(3, 4), form="contact-us")
    d.event(ids["a"], "email_clicked", tokyo(3, 14), machine=True, send="send-9", email="x")
    d.event(ids["a"], "email_clicked", tokyo(3, 15), send="send-7", email="news-mar")
    d.move(ids["a"], "hot", tokyo(3, 3))
    d.move(ids["a"], "meeting", tokyo(3, 10))
    d.move(ids["a"], "won", tokyo(3, 20), deal_value=1_000_000)
    # b: a machine page view first (ignored), then the spring ad; sent back from hot
    ids["b"] = d.contact("b@example.jp", tokyo(3, 3), company="Acme")
    d.page(ids["b"], tokyo(3, 2), machine=True, utm_campaign="bot", referrer="https://evil.test/")
    d.page(ids["b"], tokyo(3, 3), **SPRING, referrer="HTTPS://Google.com?src=ad")
    d.move(ids["b"], "nurturing", tokyo(3, 4))
    d.move(ids["b"], "hot", tokyo(3, 6))
    d.move(ids["b"], "nurturing", tokyo(3, 8))
    # c: imported, no UTM, a news site; won without any campaign touch
    with engine.begin() as conn:
        batch = conn.execute(
            insert(imports)
            .values(filename="leads.csv", encoding="utf-8", mode="valid_rows", mapping={},
                    rows_total=1, rows_created=1, rows_updated=0, rows_invalid=0, errors=[],
                    created_at=tokyo(3, 5, 9))
            .returning(imports.c.id)
        ).scalar_one()  # fmt: skip
    ids["batch"] = int(batch)
    ids["c"] = d.contact("c@example.jp", tokyo(3, 5), source_kind="import",
                         source_ref=f"import:{batch}")  # fmt: skip
    d.page(ids["c"], tokyo(3, 6), referrer="https://news.example.com#top")
    d.move(ids["c"], "nurturing", tokyo(3, 6))
    d.move(ids["c"], "hot", tokyo(3, 7))
    d.move(ids["c"], "meeting", tokyo(3, 8))
    d.move(ids["c"], "won", tokyo(3, 25), deal_value=500_000)
    # d: 2026-02-28 16:00 UTC is March 1st 01:00 in Tokyo
    feb28 = datetime(2026, 2, 28, 16, tzinfo=UTC)
    ids["d"] = d.contact("d@example.jp", feb28)
    d.page(ids["d"], feb28, utm_source="facebook", utm_medium="social", utm_campaign="spring")
    # f: 2026-03-31 16:00 UTC is April 1st in Tokyo
    ids["f"] = d.contact("f@example.jp", datetime(2026, 3, 31, 16, tzinfo=UTC))
    d.page(ids["f"], datetime(2026, 3, 31, 16, tzinfo=UTC), **SPRING)
    # w absorbs loser: the loser's page view moves to w, its stage history does not count
    ids["loser"] = d.contact("loser@example.jp", tokyo(3, 2))
    d.page(ids["loser"], tokyo(3, 2), **WEBINAR)
    d.move(ids["loser"], "hot", tokyo(3, 4))
    ids["w"] = d.contact("w@example.jp", tokyo(3, 4))
    d.move(ids["w"], "nurturing", tokyo(3, 9))
    clock.set(tokyo(3, 12))
    with engine.begin() as conn:
        merge_contacts(conn, clock, winner_id=ids["w"], loser_id=ids["loser"], merged_by="test")
    # e: won on the spring ad, then erased: gone with its history
    ids["e"] = d.contact("e@example.jp", tokyo(3, 2))
    d.page(ids["e"], tokyo(3, 2), **SPRING)
    d.move(ids["e"], "hot", tokyo(3, 3))
    d.move(ids["e"], "meeting", tokyo(3, 5))
    d.move(ids["e"], "won", tokyo(3, 15), deal_value=200_000)
    with engine.begin() as conn:
        conn.execute(delete(contacts).where(contacts.c.id == ids["e"]))
    # g: a partner's form (source only), then lost
    ids["g"] = d.contact("g@example.jp", tokyo(3, 2))
    d.event(ids["g"], "form_submitted", tokyo(3, 2), form="seminar", utm_source="partner")
    d.move(ids["g"], "nurturing", tokyo(3, 3))
    d.move(ids["g"], "lost", tokyo(3, 7))
    # p: a February lead from the winter campaign, won in March
    ids["p"] = d.contact("p@example.jp", tokyo(2, 3))
    d.page(ids["p"], tokyo(2, 3), utm_source="google", utm_medium="cpc", utm_campaign="winter")
    d.move(ids["p"], "hot", tokyo(2, 20))
    d.move(ids["p"], "meeting", tokyo(3, 5))
    d.move(ids["p"], "won", tokyo(3, 18), deal_value=300_000)
    # u: won in dollars
    ids["u"] = d.contact("u@example.jp", tokyo(2, 5))
    d.move(ids["u"], "meeting", tokyo(3, 1))
    d.move(ids["u"], "won", tokyo(3, 22), deal_value=1000, currency="USD")
    with engine.begin() as conn:
        for campaign, first, last, amount, currency in [
            ("spring", date(2026, 3, 1), date(2026, 3, 31), 310_000, "JPY"),
            ("spring", date(2026, 4, 1), date(2026, 4, 30), 100_000, "JPY"),  # after March
            ("spring", date(2026, 3, 1), date(2026, 3, 10), 100, "USD"),
            ("webinar", date(2026, 2, 15), date(2026, 3, 16), 60_000, "JPY"),  # 16 of 30 days
            ("tv", date(2026, 3, 1), date(2026, 3, 31), 50_000, "JPY"),  # no leads at all
        ]:
            create_cost(conn, clock, CostIn(campaign=campaign, first_day=first, last_day=last,
                                            amount=amount, currency=currency))  # fmt: skip
    clock.set(tokyo(4, 10))
    return ids


def report(engine: Engine, clock: FrozenClock, **kw: Any) -> ReportResult:
    return run_named(engine, clock, "campaigns", **{"period": MARCH, **kw})


def rows(result: ReportResult, name: str, keys: int = 1) -> dict[Any, dict[str, Any]]:
    found = next(t for t in result.tables if t.name == name)
    out: dict[Any, dict[str, Any]] = {}
    for row in found.rows:
        key = row[0] if keys == 1 else tuple(row[:keys])
        assert key not in out
        out[key] = dict(zip(found.columns, row, strict=True))
    return out


MEASURES = ("leads", "nurturing", "hot", "meeting", "won", "revenue")


def measures(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in MEASURES)


def test_leads_by_first_touch_utm_and_the_stages_they_reached(
    engine: Engine, clock: FrozenClock, data: dict[str, int]
) -> None:
    utm = rows(report(engine, clock), "utm", keys=3)
    # March leads (Tokyo): a b c d w g. e was erased, f is April in Tokyo, the loser is
    # merged into w (whose created_at became March 2nd), p and u are February leads.
    assert {k: measures(v) for k, v in utm.items()} == {
        # a skipped nurturing and counts there; b went back from hot and still reached it
        ("google", "cpc", "spring"): (2, 2, 2, 1, 1, 1_000_000.0),
        (None, None, None): (1, 1, 1, 1, 1, 500_000.0),  # c
        ("facebook", "social", "spring"): (1, 0, 0, 0, 0, 0.0),  # d, March 1st in Tokyo
        # w: the loser's page view moved to w, and the merge took w to the loser's stage
        # (hot, a merge move of w's); the loser's own history does not count
        ("newsletter", "email", "webinar"): (1, 1, 1, 0, 0, 0.0),
        ("partner", None, None): (1, 1, 0, 0, 0, 0.0),  # g: a form with a source only
    }


def test_costs_give_cost_per_lead_per_won_deal_and_roi(
    engine: Engine, clock: FrozenClock, data: dict[str, int]
) -> None:
    camps = rows(report(engine, clock), "campaigns")
    got = {k: (*measures(v), v["cost"], v["cost_per_lead"], v["cost_per_won"], v["roi"])
           for k, v in camps.items()}  # fmt: skip
    assert got == {
        # a b d; 310,000 spent in March (the April cost and the dollars are not counted)
        "spring": (3, 2, 2, 1, 1, 1_000_000.0, 310_000.0, round(310_000 / 3, 2), 310_000.0,
                   round(100 * (1_000_000 - 310_000) / 310_000, 1)),
        None: (2, 2, 1, 1, 1, 500_000.0, None, None, None, None),  # c g
        # 60,000 over Feb 15 – Mar 16 (30 days), 16 of them in March
        "webinar": (1, 1, 1, 0, 0, 0.0, 32_000.0, 32_000.0, None, -100.0),
        "tv": (0, 0, 0, 0, 0, 0.0, 50_000.0, None, None, -100.0),  # a cost without leads
    }  # fmt: skip
    # half of March: half of spring's March cost and 1 of webinar's 30 days
    first_half = Period(date(2026, 3, 1), date(2026, 3, 15), TOKYO)
    half = rows(report(engine, clock, period=first_half), "campaigns")
    assert half["spring"]["cost"] == round(310_000 * 15 / 31, 2)
    assert half["webinar"]["cost"] == round(60_000 * 15 / 30, 2)


def test_referrer_domains_first_forms_and_import_batches(
    engine: Engine, clock: FrozenClock, data: dict[str, int]
) -> None:
    result = report(engine, clock)
    referrers = rows(result, "referrers")
    assert {k: measures(v) for k, v in referrers.items()} == {
        # a (www. dropped) and b (its machine page view from evil.test ignored)
        "google.com": (2, 2, 2, 1, 1, 1_000_000.0),
        None: (3, 2, 1, 0, 0, 0.0),  # d w (no referrer), g (no page view)
        "news.example.com": (1, 1, 1, 1, 1, 500_000.0),
    }
    forms = rows(result, "forms")
    assert {k: measures(v) for k, v in forms.items()} == {
        None: (4, 3, 3, 1, 1, 500_000.0),  # b c d w
        "contact-us": (1, 1, 1, 1, 1, 1_000_000.0),
        "seminar": (1, 1, 0, 0, 0, 0.0),
    }
    batches = rows(result, "imports")
    assert batches[data["batch"]]["filename"] == "leads.csv"
    assert measures(batches[data["batch"]]) == (1, 1, 1, 1, 1, 500_000.0)
    assert measures(batches[None]) == (5, 4, 3, 1, 1, 1_000_000.0)


def test_won_revenue_by_first_touch_last_touch_and_linear(
    engine: Engine, clock: FrozenClock, data: dict[str, int]
) -> None:
    attribution = rows(report(engine, clock), "attribution")
    third = round(1_000_000 / 3, 2)
    got = {k: (v["deals"], v["touches"], v["first_touch"], v["last_touch"], v["linear"])
           for k, v in attribution.items()}  # fmt: skip
    assert got == {
        # a's touches before its won moment: spring, webinar, the human click of send-7
        # (the machine click of send-9 is not a touch; the form had no campaign)
        "spring": (1, 1, 1_000_000.0, 0.0, third),
        "webinar": (1, 1, 0.0, 0.0, third),
        "send-7": (1, 1, 0.0, 1_000_000.0, third),
        "winter": (1, 1, 300_000.0, 300_000.0, 300_000.0),  # p: a February touch
        None: (1, 0, 500_000.0, 500_000.0, 500_000.0),  # c: no campaign touch
    }
    # each model gives out the whole revenue won in the period (e's deal was erased)
    for model in ("first_touch", "last_touch", "linear"):
        assert sum(v[model] for v in attribution.values()) == pytest.approx(1_800_000)


def test_notes_in_japanese_and_english(
    engine: Engine, clock: FrozenClock, data: dict[str, int]
) -> None:
    roi = round(100 * 690_000 / 310_000, 1)
    assert report(engine, clock, locale="en").notes == [
        "6 leads acquired in the period, 5 of them with a UTM first touch",
        "3 deals won in the period, 1,800,000 JPY in all",
        f"Best return: campaign spring, ROI {roi}%",
        "Amounts in other currencies (USD) are not counted; choose one with the currency option",
    ]
    assert report(engine, clock).notes[0] == "期間内の獲得リード 6 件(うち UTM の初回接点あり 5 件)"


def test_the_currency_option_counts_only_that_currency(
    engine: Engine, clock: FrozenClock, data: dict[str, int]
) -> None:
    result = report(engine, clock, options={"currency": "usd"})
    assert result.options == {"currency": "USD"}
    attribution = rows(result, "attribution")
    assert {k: v["linear"] for k, v in attribution.items()} == {None: 1000.0}  # u, no touch
    spring = rows(result, "campaigns")["spring"]
    assert (spring["revenue"], spring["cost"]) == (0.0, 100.0)


def test_a_filter_restricts_the_leads_and_deals(
    engine: Engine, clock: FrozenClock, data: dict[str, int]
) -> None:
    result = report(engine, clock, filter={"field": "company", "op": "eq", "value": "Acme"})
    assert {k: measures(v) for k, v in rows(result, "utm", keys=3).items()} == {
        ("google", "cpc", "spring"): (2, 2, 2, 1, 1, 1_000_000.0),
    }
    assert set(rows(result, "attribution")) == {"spring", "webinar", "send-7"}


def test_bad_report_input_is_refused(engine: Engine, clock: FrozenClock) -> None:
    with pytest.raises(Invalid, match="currency"):
        report(engine, clock, options={"currency": "dollars"})
    with pytest.raises(Invalid, match="no_such"):
        report(engine, clock, filter={"field": "no_such", "op": "eq", "value": 1})
    empty = report(engine, clock)  # nothing stored: empty tables, no error
    assert rows(empty, "utm") == {}
    assert rows(empty, "attribution") == {}


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://www.google.com/search?q=ma", "google.com"),
        ("HTTPS://WWW.Google.co.jp:443/x", "google.co.jp"),
        ("http://user@news.example.com#top", "news.example.com"),
        ("https://example.com?x=1", "example.com"),
        ("android-app://com.slack/", "com.slack"),
        ("not a url", None),
        ("", None),
        ("https://www./", None),
    ],
)
def test_referrer_domain_is_the_same_on_both_databases(
    engine: Engine, url: str, host: str | None
) -> None:
    assert url_host(url) == host
    with engine.connect() as conn:
        assert conn.execute(select(referrer_domain(conn, literal(url)))).scalar() == host


def test_rest_report_json_and_csv(admin: TestClient, data: dict[str, int]) -> None:
    params = {"from": "2026-03-01", "to": "2026-03-31", "locale": "en"}
    answer = admin.get("/api/reports/campaigns", params=params)
    assert answer.status_code == 200, answer.text
    tables = {t["name"]: t for t in answer.json()["tables"]}
    assert list(tables) == ["campaigns", "utm", "referrers", "forms", "imports", "attribution"]
    answer = admin.get("/api/reports/campaigns", params={**params, "format": "csv"})
    assert answer.status_code == 200
    lines = list(csv.reader(io.StringIO(answer.text)))
    assert lines[0][:3] == ["campaigns", "campaign", "leads"]
    spring = next(r for r in lines if r[1:2] == ["spring"])
    assert spring[2] == "3"
    bad = admin.get("/api/reports/campaigns", params={**params, "currency": "1"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_option"


# --- campaign costs: REST, CLI, bad input ---------------------------------------------


def test_cost_crud_over_rest(admin: TestClient) -> None:
    body = {"campaign": "spring", "first_day": "2026-03-01", "last_day": "2026-03-31",
            "amount": 310000}  # fmt: skip
    created = admin.post("/api/campaign-costs", json=body)
    assert created.status_code == 201, created.text
    cost = created.json()
    assert (cost["amount"], cost["currency"]) == (310000.0, "JPY")
    assert admin.post("/api/campaign-costs", json=body).json()["error"]["code"] == "cost_exists"
    changed = admin.put(f"/api/campaign-costs/{cost['id']}", json={**body, "amount": 1.5})
    assert changed.status_code == 200
    assert admin.get(f"/api/campaign-costs/{cost['id']}").json()["amount"] == 1.5
    listed = admin.get("/api/campaign-costs", params={"campaign": "spring"}).json()
    assert [c["id"] for c in listed["items"]] == [cost["id"]]
    assert admin.get("/api/campaign-costs", params={"campaign": "x"}).json()["items"] == []
    assert admin.delete(f"/api/campaign-costs/{cost['id']}").status_code == 204
    missing = admin.get(f"/api/campaign-costs/{cost['id']}")
    assert missing.status_code == 404
    assert admin.delete(f"/api/campaign-costs/{cost['id']}").status_code == 404


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"amount": "abc"}, "amount"),
        ({"amount": "310000"}, "amount"),  # a string is not a number
        ({"amount": True}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": None}, "amount"),
        ({"last_day": "2026-02-01"}, "before"),
        ({"first_day": "2026-02-30"}, "first_day"),
        ({"currency": "yen"}, "currency"),
        ({"campaign": ""}, "campaign"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_costs_are_refused_with_the_field_named(
    admin: TestClient, change: dict[str, Any], named: str, stored: Any
) -> None:
    before = stored()
    body = {"campaign": "spring", "first_day": "2026-03-01", "last_day": "2026-03-31",
            "amount": 310000, **change}  # fmt: skip
    answer = admin.post("/api/campaign-costs", json=body)
    assert answer.status_code == 422, answer.text
    assert named in answer.json()["error"]["message"]
    assert stored() == before


def test_costs_need_an_admin_key(client: TestClient, ingest_key: str) -> None:
    assert client.get("/api/campaign-costs").status_code == 401
    answer = client.post(
        "/api/campaign-costs",
        json={"campaign": "x", "first_day": "2026-03-01", "last_day": "2026-03-01", "amount": 1},
        headers={"Authorization": f"Bearer {ingest_key}"},
    )
    assert answer.status_code == 403


def test_parse_amount_accepts_written_numbers_only() -> None:
    assert parse_amount("1,200.505") == 1200.5 or parse_amount("1,200.505") == 1200.51
    assert parse_amount(" 300000 ") == 300000.0
    for bad in ("abc", "", "nan", "inf", "-5", "1e20"):
        with pytest.raises(Invalid, match="must be a number"):
            parse_amount(bad)


def test_cli_sets_lists_and_deletes_costs_and_prints_the_report(
    db_url: str, data: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EKIDEN_DATABASE_URL", db_url)
    monkeypatch.setenv("EKIDEN_SECRET_KEY", "test-secret-key-" + "x" * 32)
    runner = CliRunner()
    days = ["--from", "2026-03-01", "--to", "2026-03-31"]
    # replaces the 310,000 entered for exactly these days
    done = runner.invoke(cli_app, ["campaigns", "cost", "set", "spring", "155,000", *days])
    assert done.exit_code == 0, done.output
    assert "replaced" in done.output
    listed = runner.invoke(cli_app, ["campaigns", "cost", "list", "--campaign", "spring"])
    assert listed.exit_code == 0, listed.output
    assert "155,000.00" in listed.output
    assert "310,000.00" not in listed.output
    shown = runner.invoke(cli_app, ["report", "campaigns", *days, "--csv"])
    assert shown.exit_code == 0, shown.output
    spring = next(r for r in csv.reader(io.StringIO(shown.output)) if r[1:2] == ["spring"])
    assert spring[8] == "155000.0"  # campaign, leads, 3 stages, won, revenue, cost
    table = runner.invoke(cli_app, ["report", "campaigns", *days, "--locale", "en"])
    assert table.exit_code == 0, table.output
    assert "Best return: campaign spring" in table.output
    bad = runner.invoke(cli_app, ["campaigns", "cost", "set", "spring", "lots", *days])
    assert bad.exit_code == 1
    assert "must be a number" in bad.output
    backwards = runner.invoke(
        cli_app,
        ["campaigns", "cost", "set", "x", "1", "--from", "2026-03-02", "--to", "2026-03-01"],
    )
    assert backwards.exit_code == 1
    assert "before first_day" in backwards.output
    gone = runner.invoke(cli_app, ["campaigns", "cost", "delete", "999"])
    assert gone.exit_code == 1
    assert "no campaign cost with id 999" in gone.output
