"""A coupon issued by a journey shows in the emails sent after it: the R13 example's sale
announcement reaches each contact, through a real SMTP server, with their own code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

import ekiden.messaging.handler  # noqa: F401  (registers the "email" handler)
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.consent import record_consent
from ekiden.journeys import bundled
from ekiden.messaging.templates import TemplateProblem, check_part, render_part
from ekiden.outbox import deliver_due
from ekiden.worker import wait_until_idle
from smtp_server import SmtpTestServer
from test_journeys import journey_worker, person, submit
from test_sending_support import mail_settings


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def settings(db_url: str, smtp: SmtpTestServer) -> Settings:
    return mail_settings(db_url, smtp.port)


def text_of(message: Any) -> str:
    part = message.get_body(preferencelist=("plain",))
    return str(part.get_content())


def test_r13_sale_email_carries_each_contacts_own_coupon_code(
    engine: Engine,
    clock: FrozenClock,
    settings: Settings,
    admin: TestClient,
    smtp: SmtpTestServer,
) -> None:
    with engine.begin() as conn:
        bundled.load_examples(conn, clock, settings.zone)
    assert admin.post("/api/journeys/survey-sample/activate").status_code == 200
    worker = journey_worker(engine, clock, settings)
    silent = person(engine, clock, "silent@example.jp", last_name="静")
    quiet = person(engine, clock, "quiet@example.jp", last_name="穏")
    for contact in (silent, quiet):
        with engine.begin() as conn:
            record_consent(conn, clock, contact, status="granted", source="form")
        submit(engine, clock, contact, "survey")
    wait_until_idle(worker)
    clock.advance(timedelta(days=7, minutes=1))  # nobody asked for the sample
    wait_until_idle(worker)
    while deliver_due(engine, clock, settings):
        pass

    codes = {
        contact: admin.get(f"/api/contacts/{contact}/coupons").json()["items"][0]["code"]
        for contact in (silent, quiet)
    }
    assert codes[silent] != codes[quiet]
    sales = {}
    for message in smtp.parsed():
        if message["Subject"] == "今だけの特別価格のお知らせ":
            sales[message["To"].addresses[0].addr_spec] = text_of(message)
    assert set(sales) == {"silent@example.jp", "quiet@example.jp"}
    for contact, address in ((silent, "silent@example.jp"), (quiet, "quiet@example.jp")):
        found = re.findall(r"SALE-[0-9A-F]{10}", sales[address])
        assert found == [codes[contact]], sales[address]


def test_coupons_in_templates_are_checked_and_empty_without_a_code() -> None:
    check_part("html", "<p>{{ coupons.coupon_code }} {{ coupons.other }}</p>", ())
    with pytest.raises(TemplateProblem, match="coupon"):
        check_part("html", "<p>{{ coupon.code }}</p>", ())  # the name is coupons
    from ekiden.messaging.context import Loose

    rendered = render_part(
        "html", "[{{ coupons.coupon_code }}|{{ coupons.x | default('なし') }}]", {"coupons":
        Loose({"coupon_code": "SALE-1"})}
    )  # fmt: skip
    assert rendered == "[SALE-1|なし]"
