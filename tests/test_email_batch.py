"""Delivering email in groups and queueing in bulk: the group path sends exactly the bytes the
one-by-one path composes, keeps the decisions (consent, caps) and the DKIM signature, and the
bulk APIs (``outbox.enqueue_many``, ``sending.send_emails``) write each key once."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dkim
import pytest
from sqlalchemy import Engine, func, select

import ekiden.messaging.handler  # noqa: F401  (registers the "email" handler)
import test_smtp
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.consent import unsubscribe
from ekiden.errors import Invalid, NotFound
from ekiden.messaging import htmlparts, sends
from ekiden.messaging.sending import send_emails
from ekiden.messaging.sending_compose import compose_message
from ekiden.messaging.sends_models import SendIn
from ekiden.messaging.sends_tables import email_messages
from ekiden.outbox import NewEntry, deliver_due, enqueue, enqueue_many
from ekiden.outbox.dispatcher import GROUP_SIZE, groups
from ekiden.outbox.dkim import DkimSigner, split_message
from ekiden.outbox.models import OutboxEntry, Status
from ekiden.outbox.tables import outbox
from smtp_server import SmtpTestServer
from test_sending_support import add_contacts, add_template, mail_settings, statuses

# the SMTP server and DKIM key fixtures of the delivery tests
smtp = test_smtp.smtp
dkim_key = test_smtp.dkim_key


def _settings(db_url: str, smtp: SmtpTestServer, **overrides: Any) -> Settings:
    return mail_settings(db_url, smtp_url=smtp.url, **overrides)


def _send_to_all(engine: Engine, clock: FrozenClock, settings: Settings) -> None:
    with engine.begin() as conn:
        sends.create_send(
            conn,
            clock,
            settings,
            SendIn.model_validate(
                {"template": "news", "audience": {"filter": {"field": "email", "op": "is_set"}}}
            ),
        )
    while sends.dispatch_due(engine, clock, settings):
        pass


def _without_signature(data: bytes) -> bytes:
    assert data.startswith(b"DKIM-Signature:")
    headers, _ = split_message(data)
    first = b"".join(name + b":" + value for name, value in headers[:1])
    return data[len(first) :]


def test_group_delivery_sends_the_bytes_the_one_by_one_path_composes_signed(
    engine: Engine, db_url: str, clock: FrozenClock, smtp: SmtpTestServer, dkim_key: Path
) -> None:
    settings = _settings(
        db_url,
        smtp,
        dkim_domain="ekiden.example",
        dkim_selector="s1",
        dkim_private_key_path=str(dkim_key),
        bounce_address="bounces@ekiden.example",
        email_site_domains="example.com",
    )
    add_template(engine, clock)
    add_contacts(
        engine, clock, 30, states=[{"company": "襷物流"} if n % 2 else {} for n in range(30)]
    )
    _send_to_all(engine, clock, settings)
    assert deliver_due(engine, clock, settings) == 30

    signer = DkimSigner.from_settings(settings)
    assert signer is not None
    record = signer.public_record().encode()
    assert len(smtp.received) == 30
    with engine.connect() as conn:
        rows = conn.execute(select(email_messages).order_by(email_messages.c.id)).all()
        by_header = {row.message_id_header: row for row in rows}
        for received in smtp.received:
            assert dkim.verify(received.data, dnsfunc=lambda name, timeout=5: record)
            header = re.search(rb"Message-ID: (<[^>]+>)", received.data)
            assert header is not None
            row = by_header[header.group(1).decode()]
            composed = compose_message(
                conn,
                clock,
                settings,
                template_key=row.template_key,
                version=row.template_version,
                contact_id=row.contact_id,
                message_id=row.id,
                send_id=row.send_id,
            )
            wire = composed.as_bytes(policy=composed.policy.clone(linesep="\r\n"))
            assert _without_signature(received.data) == wire
            # the VERP envelope names the outbox row; the recipient is the contact
            entry_id = conn.execute(
                select(outbox.c.id).where(
                    outbox.c.key == sends.outbox_key(row.send_id, row.contact_id)
                )
            ).scalar()
            assert received.sender.startswith(f"bounces+{entry_id}-")
            assert received.recipients == [composed["To"].addresses[0].addr_spec]
    assert statuses(engine) == {"sent": 30}


def test_unsubscribed_before_the_group_is_skipped_and_others_go(
    engine: Engine, db_url: str, clock: FrozenClock, smtp: SmtpTestServer
) -> None:
    settings = _settings(db_url, smtp)
    add_template(engine, clock)
    ids = add_contacts(engine, clock, 10)
    _send_to_all(engine, clock, settings)
    with engine.begin() as conn:
        for contact_id in ids[::3]:
            unsubscribe(conn, clock, contact_id)
    while deliver_due(engine, clock, settings):
        pass
    assert len(smtp.received) == 10 - len(ids[::3])
    assert statuses(engine) == {"sent": 6, "skipped": 4}


def test_frequency_cap_holds_for_two_messages_to_one_contact_in_one_group(
    engine: Engine, db_url: str, clock: FrozenClock, smtp: SmtpTestServer
) -> None:
    settings = _settings(
        db_url, smtp, email_frequency_cap=1, email_frequency_days=7, outbox_concurrency=1
    )
    add_template(engine, clock)
    [contact] = add_contacts(engine, clock, 1)
    with engine.begin() as conn:
        created = send_emails(
            conn,
            clock,
            settings,
            template="news",
            category="marketing",
            recipients=[(contact, "first"), (contact, "second")],
        )
    assert sorted(created) == ["first", "second"]
    assert deliver_due(engine, clock, settings) == 2
    assert len(smtp.received) == 1
    assert statuses(engine) == {"sent": 1, "skipped": 1}


def test_send_emails_writes_each_key_once_and_refuses_unknown_contacts(
    engine: Engine, db_url: str, clock: FrozenClock, smtp: SmtpTestServer
) -> None:
    settings = _settings(db_url, smtp)
    add_template(engine, clock, category="transactional")
    ids = add_contacts(engine, clock, 3)
    with engine.begin() as conn:
        first = send_emails(
            conn,
            clock,
            settings,
            template="news",
            category="transactional",
            recipients=[(ids[0], "k0"), (ids[1], "k1"), (ids[1], "k1")],
        )
        again = send_emails(
            conn,
            clock,
            settings,
            template="news",
            category="transactional",
            recipients=[(ids[0], "k0"), (ids[2], "k2")],
        )
    assert set(first) == {"k0", "k1"}
    assert set(again) == {"k2"}
    with pytest.raises(NotFound), engine.begin() as conn:
        send_emails(
            conn,
            clock,
            settings,
            template="news",
            category="transactional",
            recipients=[(ids[0], "k3"), (999_999, "k4")],
        )
    with pytest.raises(Invalid), engine.begin() as conn:
        send_emails(
            conn, clock, settings, template="news", category="weekly", recipients=[(ids[0], "x")]
        )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(email_messages)).scalar() == 3
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 3
    while deliver_due(engine, clock, settings):
        pass
    assert sorted(r for item in smtp.received for r in item.recipients) == [
        "c0@example.jp",
        "c1@example.jp",
        "c2@example.jp",
    ]


def test_enqueue_many_returns_ids_of_new_keys_only(engine: Engine, clock: FrozenClock) -> None:
    with engine.begin() as conn:
        existing = enqueue(conn, clock, kind="webhook", key="w-0", payload={"n": 0})
        created = enqueue_many(
            conn,
            clock,
            [NewEntry(kind="webhook", key=f"w-{n}", payload={"n": n}) for n in (0, 1, 2, 2)],
        )
    assert existing is not None
    assert sorted(created) == ["w-1", "w-2"]
    assert len(set(created.values())) == 2
    assert existing not in created.values()
    with engine.connect() as conn:
        rows = conn.execute(select(outbox.c.key, outbox.c.payload, outbox.c.status)).all()
    assert sorted((key, payload["n"], status) for key, payload, status in rows) == [
        ("w-0", 0, "pending"),
        ("w-1", 1, "pending"),
        ("w-2", 2, "pending"),
    ]


def test_enqueue_many_refuses_a_bad_key_and_writes_nothing(
    engine: Engine, clock: FrozenClock
) -> None:
    with pytest.raises(Invalid, match="outbox key"), engine.begin() as conn:
        enqueue_many(
            conn,
            clock,
            [
                NewEntry(kind="mail", key="ok", payload={}),
                NewEntry(kind="mail", key="", payload={}),
            ],
        )
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 0


def _entry(number: int, kind: str) -> OutboxEntry:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    return OutboxEntry(
        number, kind, f"k{number}", {}, None, Status.SENDING, 1, now, now, None, None, now
    )


def test_groups_hold_one_kind_and_give_every_lane_work() -> None:
    entries = [_entry(n, "email" if n % 3 else "webhook") for n in range(100)]
    split = groups(entries, 4)
    assert all(len({e.kind for e in group}) == 1 for group in split)
    assert all(len(group) <= GROUP_SIZE for group in split)
    assert sorted(e.id for group in split for e in group) == list(range(100))
    assert len(groups(entries[:8], 4)) >= 4


def _reference_text(document: str) -> str:
    maker = htmlparts._TextMaker()
    maker.feed(document)
    maker.close()
    lines = [line.strip() for line in "".join(maker.out).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _random_html(rng: random.Random, depth: int = 0) -> str:
    tags = ["p", "div", "a", "br", "li", "ul", "img", "span", "h1", "table", "td", "style"]
    texts = ["こんにちは", "a  b", " x ", "&amp;", "&lt;b&gt;", "&#12354;", "\n", "https://x.jp/y"]
    values = ["https://ex.co/a?b=1&amp;c=2", "http://x", "a > b", "", "x y", "mailto:a@b"]
    out = []
    for _ in range(rng.randint(0, 4)):
        if rng.random() < 0.4 or depth > 3:
            out.append(rng.choice(texts))
            continue
        tag = rng.choice(tags)
        attributes = "".join(
            f' {rng.choice(["href", "alt", "class", "HREF"])}="{rng.choice(values)}"'
            for _ in range(rng.randint(0, 2))
        )
        inner = "a > b { x: '</p>' }" if tag == "style" else _random_html(rng, depth + 1)
        out.append(f"<{tag}{attributes}>{inner}</{tag}>")
    return "".join(out)


def test_fast_text_part_equals_the_html_parsers_reading() -> None:
    rng = random.Random(5)
    documents = [_random_html(rng) for _ in range(3000)] + [
        '<a href=https://x.co/?a=1&b=2>l</a><img alt="a &amp; b"><br/>',
        "<!DOCTYPE html><html><head><title>T</title></head><body><p>b</p></body></html>",
        "<scRipt>if (a<b) {}</SCRIPT>ok",
        "a < b",  # not read by the expression: the parser's answer
        "<p>unclosed <!-- comment",
    ]
    for document in documents:
        assert htmlparts.html_to_text(document) == _reference_text(document), document


def test_dkim_split_matches_dkimpy_and_signatures_verify(dkim_key: Path) -> None:
    from ekiden.outbox.dkim import load_private_key

    signer = DkimSigner("ekiden.example", "s1", load_private_key(str(dkim_key)))
    record = signer.public_record().encode()
    messages = [
        b"From: a@ekiden.example\r\nTo: =?utf-8?b?5bGx55Sw?=\r\n <b@example.jp>\r\n"
        b"Subject: hi\r\n\r\nbody\r\n\r\n\r\n",
        b"From: a@ekiden.example\nTo: b@example.jp\nSubject: lf only\n\nbody\n",
        b"From: a@ekiden.example\r\nSubject: no body\r\n\r\n",
    ]
    for message in messages:
        if b"\r\n" in message:
            assert split_message(message) == tuple(dkim.rfc822_parse(message))
        signed = signer.sign(message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
