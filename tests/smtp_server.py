"""A real SMTP server (aiosmtpd) for tests, on a free loopback port in a thread.

Use it as a context manager::

    from smtp_server import SmtpTestServer

    with SmtpTestServer() as smtp:
        settings = load_settings(..., smtp_url=smtp.url)
        ...deliver...
        [message] = smtp.parsed()            # email.message.EmailMessage objects
        assert smtp.count_by_message_id() == {"<...>": 1}

What arrived is in ``smtp.received`` (``Received(sender, recipients, data)``, ``data`` the raw
bytes as the server got them, DKIM header included). To simulate a provider:

- ``smtp.fail_next(3, "451 4.3.0 try again later")`` answers the next 3 DATA commands with
  that reply (nothing is stored for them);
- ``smtp.refuse_recipient("x@example.com", "550 5.1.1 no such user")`` refuses RCPT TO;
- ``smtp.fail_all("421 4.3.2 down for maintenance")`` / ``smtp.recover()``.

``SmtpTestServer(keep=False)`` parses and discards messages, keeping only a count
(``smtp.accepted``) — for benchmarks. ``SmtpTestServer(login=("user", "secret"))`` offers
SMTP AUTH (PLAIN / LOGIN, allowed without TLS on loopback) with those credentials.
``SmtpTestServer(starttls=True)`` offers STARTTLS with a self-signed certificate for
127.0.0.1; ``smtp.client_tls_context()`` is a client context that trusts it.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    data: bytes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        reply = self.server.refused_recipients.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        return self.server.take(envelope)


class SmtpTestServer:
    def __init__(
        self, *, keep: bool = True, login: tuple[str, str] | None = None, starttls: bool = False
    ) -> None:
        self.keep = keep
        self.login = login
        self._cert_dir = tempfile.TemporaryDirectory(prefix="smtp-test-")
        self.cert_path = Path(self._cert_dir.name) / "cert.pem"
        self.port = _free_port()
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.received: list[Received] = []
        self.accepted = 0
        self.refused_recipients: dict[str, str] = {}
        self._failures: list[str] = []
        self._fail_all: str | None = None
        self._lock = threading.Lock()
        self._parser = BytesParser(policy=policy.default)
        auth: dict[str, Any] = {}
        if login is not None:
            auth = {
                "authenticator": self._authenticate,
                "auth_required": False,  # offered; requiring it without TLS warns
                "auth_require_tls": False,
            }
        if starttls:
            auth["tls_context"] = self._server_tls_context()
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, data_size_limit=0, **auth
        )

    def __enter__(self) -> SmtpTestServer:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()
        self._cert_dir.cleanup()

    def _server_tls_context(self) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = self.cert_path.with_name("key.pem")
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, key_path)
        return context

    def client_tls_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this server's certificate."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        expected = self.login
        ok = (
            expected is not None
            and isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == expected
        )
        return AuthResult(success=ok)

    def take(self, envelope: Envelope) -> str:
        with self._lock:
            if self._fail_all is not None:
                return self._fail_all
            if self._failures:
                return self._failures.pop(0)
            data = envelope.original_content or b""
            if self.keep:
                self.received.append(
                    Received(str(envelope.mail_from), list(envelope.rcpt_tos), data)
                )
            else:
                self._parser.parsebytes(data)  # the cost a real receiver pays
            self.accepted += 1
        return "250 OK queued"

    def fail_next(self, count: int, reply: str) -> None:
        with self._lock:
            self._failures.extend([reply] * count)

    def fail_all(self, reply: str) -> None:
        self._fail_all = reply

    def recover(self) -> None:
        self._fail_all = None
        self._failures.clear()

    def refuse_recipient(self, address: str, reply: str) -> None:
        self.refused_recipients[address] = reply

    def parsed(self) -> list[EmailMessage]:
        """Every stored message, parsed with the standard ``email`` package."""
        return [self._parser.parsebytes(r.data) for r in self.received]  # type: ignore[misc]

    def count_by_message_id(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]).strip() for m in self.parsed())
