"""Helpers of the sending tests: settings with a sender, templates, contacts in bulk, and a
local SMTP server (aiosmtpd) that records what arrives and can refuse for a while."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, insert, select

from ekiden.clock import Clock
from ekiden.config import Settings, load_settings
from ekiden.contacts.tables import contacts
from ekiden.messaging.models import EmailTemplateIn
from ekiden.messaging.sends_tables import email_messages
from ekiden.messaging.store import create_template

SENDER = {
    "email_sender_name": "駅伝商事",
    "email_sender_address": "news@ekiden.example",
    "email_postal_address": "東京都千代田区丸の内1-1-1",
}


def mail_settings(db_url: str, smtp_port: int | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "secret_key": "test-secret-key-" + "x" * 32,
        "base_url": "http://testserver",
        **SENDER,
        **overrides,
    }
    if smtp_port is not None:
        values["smtp_url"] = f"smtp://127.0.0.1:{smtp_port}"
    return load_settings(**values)


def add_template(
    engine: Engine,
    clock: Clock,
    key: str = "news",
    *,
    category: str = "marketing",
    subject: str = "{{ contact.last_name | default('お客') }}様へのお知らせ",
) -> None:
    with engine.begin() as conn:
        create_template(
            conn,
            clock,
            EmailTemplateIn(
                key=key,
                name=key,
                category=category,
                subject=subject,
                html='<html><body><p>こんにちは</p><a href="https://example.com/a">A</a></body></html>',
            ),
        )


def add_contacts(
    engine: Engine,
    clock: Clock,
    count: int,
    *,
    consent: str = "granted",
    prefix: str = "c",
    states: Sequence[dict[str, Any]] | None = None,
) -> list[int]:
    """``count`` contacts with addresses ``<prefix><n>@example.jp``; ``states`` (one dict per
    contact) overrides columns such as email_consent or unsubscribed_at."""
    now = clock.now()
    rows = []
    for n in range(count):
        row: dict[str, Any] = {
            "email": f"{prefix}{n}@example.jp",
            "last_name": f"山田{n}",
            "first_name": "太郎",
            "email_consent": consent,
            "custom": {},
            "created_at": now,
            "updated_at": now,
        }
        if states is not None:
            row.update(states[n])
        rows.append(row)
    keys = {key for row in rows for key in row}  # one statement needs the same columns
    rows = [{key: row.get(key) for key in keys} for row in rows]
    with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            conn.execute(insert(contacts), rows[start : start + 2000])
        ids = conn.execute(
            select(contacts.c.id)
            .where(contacts.c.email.like(f"{prefix}%@example.jp"))
            .order_by(contacts.c.id)
        ).scalars()
        return list(ids)


def statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(select(email_messages.c.status)).scalars())


@dataclass
class Received:
    rcpt: list[str]
    message: EmailMessage


class _Recorder:
    def __init__(self, server: SmtpSink) -> None:
        self.server = server

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        with self.server.lock:
            if self.server.refuse_next > 0:
                self.server.refuse_next -= 1
                self.server.refused += 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.server.lock:
            self.server.received.append(Received(list(envelope.rcpt_tos), parsed))
        return "250 OK"


@dataclass
class SmtpSink:
    """What arrived; ``refuse_next`` recipients are answered 451 before it accepts again."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    refuse_next: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def per_recipient(self) -> Counter[str]:
        with self.lock:
            return Counter(r for item in self.received for r in item.rcpt)

    def message_ids(self) -> list[str]:
        with self.lock:
            return [str(item.message["Message-ID"]) for item in self.received]


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sink = SmtpSink(port=port)
    controller = Controller(_Recorder(sink), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
