"""``ekiden bench email``: personalised, tracked, DKIM-signed messages per second from one
worker into a local SMTP server, against plain smtplib sending the same messages.

Per run, on a fresh scratch database:
1. setup (not timed): N contacts with consent, one marketing template (personalised subject
   and body, CSS to inline, three links into the company's site), a DKIM key;
2. queue (timed separately): a send to all N is written as messages + outbox rows by the
   worker's "sends" step;
3. pipeline (the headline figure): the worker's outbox step delivers every row — per message:
   claim, consent re-check, render with tracking links and unsubscribe headers, DKIM-sign,
   SMTP over one pooled connection, mark sent + ``email_delivered`` event in the database;
4. smtplib (the reference): the same messages, rendered beforehand (not timed), sent with
   ``smtplib.SMTP.sendmail`` over one connection — no database, no rendering, no signing.

The SMTP server is aiosmtpd in a separate process; it parses every message with the
``email`` package, counts it and discards it.
"""

from __future__ import annotations

import multiprocessing
import smtplib
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import make_url

from ekiden.clock import SystemClock
from ekiden.config import Settings, load_settings
from ekiden.db import create_db_engine

TEMPLATE_HTML = """<html><head><style>
  .box { padding: 16px; font-family: sans-serif; } a.button { color: #fff; background: #0a6; }
</style></head><body><div class="box">
<p>{{ contact.last_name | default('お客') }} {{ contact.first_name }}様</p>
<p>いつも{{ contact.company | default('貴社') }}をご愛顧いただきありがとうございます。</p>
<p>冬の新製品のご案内です。</p>
<p><a class="button" href="https://www.example.co.jp/products/winter">新製品を見る</a></p>
<p><a href="https://www.example.co.jp/pricing">料金プラン</a> /
   <a href="https://www.example.co.jp/cases/manufacturing">導入事例</a></p>
</div></body></html>"""


class BenchError(Exception):
    pass


@dataclass
class EmailRun:
    queue_seconds: float
    pipeline_seconds: float
    smtplib_seconds: float
    delivered: int
    received: int
    outbox_seconds: float = 0.0  # the same messages as outbox "mail" rows: no rendering
    # CPU time of this process (all threads) per phase: what the worker itself spends,
    # independent of how busy the machine is
    pipeline_cpu: float = 0.0
    smtplib_cpu: float = 0.0
    outbox_cpu: float = 0.0
    # CPU time of the SMTP server process while it received the pipeline's / smtplib's mail
    server_pipeline_cpu: float = 0.0
    server_smtplib_cpu: float = 0.0

    def cpu_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.delivered if self.delivered else 0.0

    @property
    def outbox_rate(self) -> float:
        return self.rate(self.outbox_seconds)

    def rate(self, seconds: float) -> float:
        return self.delivered / seconds if seconds else 0.0

    @property
    def pipeline_rate(self) -> float:
        return self.rate(self.pipeline_seconds)

    @property
    def smtplib_rate(self) -> float:
        return self.rate(self.smtplib_seconds)

    @property
    def ratio(self) -> float:
        return self.pipeline_rate / self.smtplib_rate if self.smtplib_rate else 0.0


@dataclass
class EmailReport:
    backend: str
    messages: int
    average_bytes: int = 0
    runs: list[EmailRun] = field(default_factory=list)

    @property
    def pipeline_median(self) -> float:
        return statistics.median(r.pipeline_rate for r in self.runs)

    @property
    def smtplib_median(self) -> float:
        return statistics.median(r.smtplib_rate for r in self.runs)

    @property
    def queue_median(self) -> float:
        return statistics.median(r.delivered / r.queue_seconds for r in self.runs)

    @property
    def ratio_median(self) -> float:
        return statistics.median(r.ratio for r in self.runs)

    @property
    def outbox_median(self) -> float:
        return statistics.median(r.outbox_rate for r in self.runs)

    def cpu_median(self, phase: str) -> float:
        """Median CPU milliseconds per message of ``phase``: pipeline, smtplib or outbox
        (the worker), server_pipeline or server_smtplib (the SMTP server process)."""
        return statistics.median(r.cpu_ms(getattr(r, f"{phase}_cpu")) for r in self.runs)


def _sink(
    port: Any, count: Synchronized[int], cpu: Synchronized[float], ready: Event, stop: Event
) -> None:
    """The SMTP server process: parse each message, count it, drop it; ``cpu`` is the
    process's CPU time after the last message."""
    from email import message_from_bytes

    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message_from_bytes(envelope.original_content or b"")
            with count.get_lock():
                count.value += 1
                cpu.value = time.process_time()
            return "250 OK"

    controller = Controller(Discard(), hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


class SmtpSink:
    def __init__(self) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        context = multiprocessing.get_context("spawn")
        self.count: Synchronized[int] = context.Value("q", 0)
        self.cpu: Synchronized[float] = context.Value("d", 0.0)
        self._ready = context.Event()
        self._stop = context.Event()
        self._process = context.Process(
            target=_sink,
            args=(self.port, self.count, self.cpu, self._ready, self._stop),
            daemon=True,
        )

    @property
    def received(self) -> int:
        return int(self.count.value)

    @property
    def cpu_seconds(self) -> float:
        """The server process's CPU time when it took its last message."""
        return float(self.cpu.value)

    def __enter__(self) -> SmtpSink:
        self._process.start()
        # a spawned process imports the main module again (the CLI: slow on a busy machine)
        if not self._ready.wait(180):
            raise BenchError("the SMTP server process did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._process.join(10)


def run_email_bench(database_url: str, *, messages: int, repeat: int) -> EmailReport:
    try:
        import aiosmtpd  # noqa: F401
    except ModuleNotFoundError:
        raise BenchError("the email benchmark needs aiosmtpd: pip install 'ekiden[test]'") from None
    from ekiden.bench.scratch import scratch_database

    report = EmailReport(make_url(database_url).get_backend_name(), messages)
    with tempfile.TemporaryDirectory(prefix="ekiden-bench-email-") as folder, SmtpSink() as sink:
        key_path = _write_dkim_key(Path(folder))
        for _ in range(repeat):
            with scratch_database(database_url) as url:
                settings = _settings(url, sink.port, key_path)
                engine = create_db_engine(url)
                try:
                    run, size = _one_run(engine, settings, sink, messages)
                finally:
                    engine.dispose()
            report.runs.append(run)
            report.average_bytes = size
    return report


def _settings(url: str, port: int, key_path: Path) -> Settings:
    return load_settings(
        database_url=url,
        secret_key="bench-secret-key-" + "x" * 32,
        base_url="https://mail.example.co.jp",
        smtp_url=f"smtp://127.0.0.1:{port}",
        email_sender_name="駅伝商事",
        email_sender_address="news@example.co.jp",
        email_postal_address="東京都千代田区丸の内1-1-1",
        email_site_domains="www.example.co.jp",
        bounce_address="bounces@mail.example.co.jp",
        dkim_domain="example.co.jp",
        dkim_selector="bench",
        dkim_private_key_path=str(key_path),
    )


def _write_dkim_key(folder: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _one_run(
    engine: Engine, settings: Settings, sink: SmtpSink, messages: int
) -> tuple[EmailRun, int]:
    from ekiden.messaging.sends import create_send, dispatch_due
    from ekiden.messaging.sends_models import Audience, SendIn

    clock = SystemClock()
    _setup(engine, clock, settings, messages)
    with engine.begin() as conn:
        create_send(
            conn,
            clock,
            settings,
            SendIn(
                template="winter",
                name="bench",
                audience=Audience(filter={"field": "email", "op": "is_set"}),
            ),
        )
    started = time.perf_counter()
    while dispatch_due(engine, clock, settings):
        pass
    queued = time.perf_counter() - started

    from ekiden.outbox.dispatcher import deliver_due

    before, server_before = sink.received, sink.cpu_seconds
    started, cpu = time.perf_counter(), time.process_time()
    delivered = 0
    while True:
        done = deliver_due(engine, clock, settings, limit=messages)
        if not done:
            break
        delivered += done
    pipeline, pipeline_cpu = time.perf_counter() - started, time.process_time() - cpu
    received = _wait_for(sink, before + delivered) - before
    server_pipeline = sink.cpu_seconds - server_before
    if delivered != messages or received != messages:
        raise BenchError(
            f"expected {messages} messages, delivered {delivered}, received {received}"
        )

    rendered = _render_again(engine, clock, settings)
    size = sum(len(data) for _, _, data in rendered) // max(len(rendered), 1)
    before, server_before = sink.received, sink.cpu_seconds
    started, cpu = time.perf_counter(), time.process_time()
    with smtplib.SMTP("127.0.0.1", sink.port, local_hostname="bench.example") as conn:
        for sender, recipient, data in rendered:
            conn.sendmail(sender, [recipient], data)
    plain, plain_cpu = time.perf_counter() - started, time.process_time() - cpu
    _wait_for(sink, before + len(rendered))
    server_plain = sink.cpu_seconds - server_before
    outbox_only, outbox_cpu = _outbox_only(engine, clock, settings, sink, rendered)
    run = EmailRun(
        queued,
        pipeline,
        plain,
        delivered,
        received,
        outbox_seconds=outbox_only,
        pipeline_cpu=pipeline_cpu,
        smtplib_cpu=plain_cpu,
        outbox_cpu=outbox_cpu,
        server_pipeline_cpu=server_pipeline,
        server_smtplib_cpu=server_plain,
    )
    return run, size


def _outbox_only(
    engine: Engine,
    clock: SystemClock,
    settings: Settings,
    sink: SmtpSink,
    rendered: list[tuple[str, str, bytes]],
) -> tuple[float, float]:
    """The delivery infrastructure alone: the same texts as outbox "mail" rows (a plain
    two-part message each, no template rendering), claimed, DKIM-signed, sent, marked."""
    from email import message_from_bytes, policy

    from ekiden.outbox import deliver_due, enqueue

    with engine.begin() as conn:
        for number, (_, recipient, data) in enumerate(rendered):
            parsed = message_from_bytes(data, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            text, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
            enqueue(
                conn,
                clock,
                kind="mail",
                key=f"bench-mail-{number}",
                payload={
                    "to": [recipient],
                    "subject": str(parsed["Subject"]),
                    "text": text.get_content() if text else "",
                    "html": html.get_content() if html else None,
                },
            )
    before = sink.received
    started, cpu = time.perf_counter(), time.process_time()
    while deliver_due(engine, clock, settings, limit=len(rendered)):
        pass
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    if _wait_for(sink, before + len(rendered)) - before != len(rendered):
        raise BenchError("not every outbox mail reached the server")
    return seconds, cpu_seconds


def _wait_for(sink: SmtpSink, count: int) -> int:
    deadline = time.monotonic() + 30
    while sink.received < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return sink.received


def _setup(engine: Engine, clock: SystemClock, settings: Settings, messages: int) -> None:
    from ekiden.contacts.tables import contacts
    from ekiden.messaging.models import EmailTemplateIn
    from ekiden.messaging.store import create_template

    now = clock.now()
    companies = ["駅伝工業", "襷物流", "箱根精機", None]
    rows: list[dict[str, Any]] = [
        {
            "email": f"user{n}@example.jp",
            "last_name": f"山田{n}",
            "first_name": "太郎",
            "company": companies[n % len(companies)],
            "email_consent": "granted",
            "custom": {},
            "created_at": now,
            "updated_at": now,
        }
        for n in range(messages)
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), 2000):
            conn.execute(insert(contacts), rows[start : start + 2000])
        create_template(
            conn,
            clock,
            EmailTemplateIn(
                key="winter",
                name="冬の新製品",
                subject="{{ contact.last_name | default('お客') }}様、冬の新製品のご案内",
                preheader="新製品と導入事例をご紹介します",
                html=TEMPLATE_HTML,
            ),
        )


def _render_again(
    engine: Engine, clock: SystemClock, settings: Settings
) -> list[tuple[str, str, bytes]]:
    """The delivered messages rendered once more, serialised as they go on the wire."""
    from ekiden.messaging.sending_compose import compose_message
    from ekiden.messaging.sends_tables import email_messages

    out: list[tuple[str, str, bytes]] = []
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                email_messages.c.id,
                email_messages.c.send_id,
                email_messages.c.contact_id,
                email_messages.c.template_key,
                email_messages.c.template_version,
            ).order_by(email_messages.c.id)
        ).all()
        for row in rows:
            message: EmailMessage = compose_message(
                conn,
                clock,
                settings,
                template_key=row.template_key,
                version=row.template_version,
                contact_id=row.contact_id,
                message_id=row.id,
                send_id=row.send_id,
            )
            data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
            out.append(("bounces@mail.example.co.jp", str(message["To"]), data))
    return out
