"""The SMTP transport: one reused connection, a per-provider rate limit, DKIM signing.

``send`` raises ``DeliveryError``: SMTP 4xx replies, timeouts and dropped connections are
temporary; 5xx replies are permanent. A message with several recipients counts as sent
when at least one recipient was accepted (retrying would double it for the others); the
refused ones are returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import secrets
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import Policy
from email.utils import getaddresses, parseaddr
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from ekiden.config import Settings
from ekiden.outbox.context import current_attempt
from ekiden.outbox.dkim import DkimSigner
from ekiden.outbox.models import DeliveryError
from ekiden.outbox.ratelimit import RateLimiter, limiter_for
from ekiden.outbox.verp import bounce_address_for

log = logging.getLogger("ekiden.outbox.smtp")

Refused = dict[str, tuple[int, bytes]]

# A pooled connection idle for this long is checked with NOOP before reuse.
IDLE_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: bool  # implicit TLS (smtps://); smtp:// upgrades with STARTTLS when offered
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("EKIDEN_SMTP_URL must look like smtp://user:pass@host:port")
        tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if tls else 25),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class SmtpTransport:
    def __init__(
        self,
        server: SmtpServer,
        *,
        settings: Settings,
        signer: DkimSigner | None = None,
        limiter: RateLimiter | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server
        self.settings = settings
        self.signer = signer
        self.limiter = limiter or RateLimiter(0)
        # certificates are verified against the system's CAs unless a context is given
        self.tls_context = tls_context
        self.used_tls = False
        self.helo_name = settings.dkim_domain or _domain(settings.bounce_address) or "localhost"
        self._conn: smtplib.SMTP | None = None
        self._last_used = 0.0
        self.connections_opened = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        """A transport for ``settings.smtp_url``; raises DeliveryError (temporary) when no
        SMTP server is configured, so mail waits until one is."""
        if not settings.smtp_url:
            raise DeliveryError("no SMTP server configured (EKIDEN_SMTP_URL)", permanent=False)
        server = SmtpServer.from_url(settings.smtp_url)
        return cls(
            server,
            settings=settings,
            signer=DkimSigner.from_settings(settings),
            limiter=limiter_for(server.name, settings.smtp_rate_per_second),
        )

    def send(self, message: EmailMessage, *, envelope_from: str | None = None) -> Refused:
        """Send ``message`` to its To, Cc and Bcc recipients (Bcc is removed from the header).

        The envelope sender is ``envelope_from``, else the VERP bounce address of the outbox
        entry being delivered, else the From address. A missing Message-ID is derived from
        the outbox key, so a retry carries the same one.
        """
        recipients = _recipients(message)
        if not recipients:
            raise DeliveryError("the message has no recipients", permanent=True)
        if "Bcc" in message:
            del message["Bcc"]
        attempt = current_attempt.get()
        if "Message-ID" not in message:
            message["Message-ID"] = _stable_message_id(
                attempt.entry.key if attempt else None, self.helo_name
            )
        if attempt is not None:
            attempt.message_id = str(message["Message-ID"]).strip()
        sender = (
            envelope_from
            or (bounce_address_for(self.settings, attempt.entry.id) if attempt else None)
            or parseaddr(str(message.get("From", "")))[1]
        )
        _set_boundaries(message)
        data = message.as_bytes(policy=_wire_policy(message.policy))
        return self.send_wire(sender, recipients, data)

    def send_wire(self, sender: str, recipients: list[str], data: bytes) -> Refused:
        """Send a message already serialised with CRLF line ends (what ``send`` does after
        serialising): DKIM-signed when configured, after the rate limit. For callers that
        build the wire form themselves and know the envelope, so nothing is parsed again.
        The caller sets ``current_attempt``'s ``message_id``."""
        if not recipients:
            raise DeliveryError("the message has no recipients", permanent=True)
        if self.signer is not None:
            data = self.signer.sign(data)
        utf8 = not (sender.isascii() and all(a.isascii() for a in recipients))
        self.limiter.wait()
        return self._send_bytes(sender, recipients, data, utf8=utf8)

    def send_raw(self, sender: str, recipients: list[str], data: bytes) -> Refused:
        """Send already-serialised bytes as they are (no signing, no header changes)."""
        self.limiter.wait()
        return self._send_bytes(sender, recipients, data, utf8=False)

    def _send_bytes(
        self, sender: str, recipients: list[str], data: bytes, *, utf8: bool
    ) -> Refused:
        for try_number in (1, 2):
            reused = self._conn is not None
            conn = self._connection()
            stage = "mail"
            try:
                options = ["SMTPUTF8"] if utf8 and conn.has_extn("smtputf8") else []
                code, reply = _mail(conn, sender, options)
                if code != 250:
                    conn.rset()
                    raise _reply_error(code, reply, f"sender {sender} refused")
                refused: Refused = {}
                for recipient in recipients:
                    code, reply = _rcpt(conn, recipient)
                    if code not in (250, 251):
                        refused[recipient] = (code, reply)
                if len(refused) == len(recipients):
                    conn.rset()
                    permanent = all(code >= 500 for code, _ in refused.values())
                    raise DeliveryError(_describe(refused), permanent=permanent)
                stage = "data"
                code, reply = conn.data(data)
                if code != 250:
                    raise _reply_error(code, reply, "message refused")
            except DeliveryError:
                self._last_used = time.monotonic()
                if stage == "data":
                    self._drop()
                raise
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                # A pooled connection the server closed fails before anything was accepted:
                # safe to try once more on a new one.
                if stage == "mail" and reused and try_number == 1:
                    continue
                raise DeliveryError(
                    f"SMTP {self.server.name}: {type(exc).__name__}: {exc}", permanent=False
                ) from None
            self._last_used = time.monotonic()
            if refused:
                log.warning("some recipients refused: %s", _describe(refused))
            return refused
        raise AssertionError("unreachable")

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
            try:
                self._conn.noop()
            except (smtplib.SMTPException, OSError):
                self._drop()
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> smtplib.SMTP:
        timeout = self.settings.smtp_timeout_seconds
        server = self.server
        try:
            conn: smtplib.SMTP
            if server.tls:
                conn = smtplib.SMTP_SSL(
                    server.host,
                    server.port,
                    local_hostname=self.helo_name,
                    timeout=timeout,
                    context=self.tls_context or _default_tls(),
                )
            else:
                conn = smtplib.SMTP(
                    server.host, server.port, local_hostname=self.helo_name, timeout=timeout
                )
            conn.ehlo()
            if not server.tls and conn.has_extn("starttls"):
                conn.starttls(context=self.tls_context or _default_tls())
                conn.ehlo()
            self.used_tls = isinstance(conn.sock, ssl.SSLSocket)
            if server.username:
                conn.login(server.username, server.password or "")
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {server.name} refused the session: {exc.smtp_code} {exc.smtp_error!r}",
                # a wrong password or a closed relay is fixed by configuration, not by time;
                # keep the mail until it is
                permanent=False,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"cannot connect to SMTP {server.name}: {exc}", permanent=False
            ) from None
        self.connections_opened += 1
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        """Say QUIT and close the pooled connection (if any)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()


# A bare address smtplib would only wrap in <>: smtplib's MAIL and RCPT first parse every
# address with the ``email`` package's address parser, which costs more than the command.
_BARE_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:\"@]+@[A-Za-z0-9.\-]+")


def _mail(conn: smtplib.SMTP, sender: str, options: list[str]) -> tuple[int, bytes]:
    """``conn.mail(sender, options)`` without re-parsing a bare address."""
    if options or not (sender.isascii() and _BARE_ADDRESS.fullmatch(sender)):
        return conn.mail(sender, options)  # SMTPUTF8 also switches the command encoding
    conn.putcmd("mail", f"FROM:<{sender}>")
    return conn.getreply()


def _rcpt(conn: smtplib.SMTP, recipient: str) -> tuple[int, bytes]:
    """``conn.rcpt(recipient)`` without re-parsing a bare address."""
    if not (recipient.isascii() and _BARE_ADDRESS.fullmatch(recipient)):
        return conn.rcpt(recipient)
    conn.putcmd("rcpt", f"TO:<{recipient}>")
    return conn.getreply()


def _set_boundaries(message: EmailMessage) -> None:
    """Give multipart parts a random boundary before serialising: the generator would
    otherwise compile a regular expression per message to pick one. "=_" cannot occur in
    quoted-printable or base64 content."""
    for part in message.walk():
        if part.is_multipart() and part.get_boundary() is None:
            part.set_boundary(f"=_{secrets.token_hex(16)}")


@lru_cache(maxsize=1)
def _default_tls() -> ssl.SSLContext:
    """One verifying TLS context for the process (loading the CA store is slow)."""
    return ssl.create_default_context()


@lru_cache(maxsize=8)
def _wire_policy(policy: Policy) -> Policy:
    """The message's policy with CRLF line ends (cloning costs more than a small message's
    serialisation, so it is done once per policy)."""
    return policy.clone(linesep="\r\n")


def _recipients(message: EmailMessage) -> list[str]:
    seen: dict[str, None] = {}
    for name in ("To", "Cc", "Bcc"):
        for header in message.get_all(name, []):
            # headers of the default policy come parsed; others are parsed here
            parsed = getattr(header, "addresses", None)
            if parsed is not None:
                addresses = [a.addr_spec for a in parsed]
            else:
                addresses = [a for _, a in getaddresses([str(header)])]
            for address in addresses:
                if address and address != "<>":
                    seen.setdefault(address, None)
    return list(seen)


def _stable_message_id(key: str | None, domain: str) -> str:
    if key is None:
        from email.utils import make_msgid

        return make_msgid(domain=domain)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def _reply_error(code: int, reply: bytes, what: str) -> DeliveryError:
    text = reply.decode("utf-8", "replace")
    return DeliveryError(f"{what}: {code} {text}", permanent=code >= 500)


def _describe(refused: Refused) -> str:
    return "; ".join(
        f"{address}: {code} {reply.decode('utf-8', 'replace')}"
        for address, (code, reply) in refused.items()
    )


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[1] if "@" in address else ""
