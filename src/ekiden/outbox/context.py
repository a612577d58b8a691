"""What a handler gets besides its entry: the clock, settings and pooled transports.

One context lives for one dispatcher run; the SMTP connection and the HTTP client it opens
are reused by every entry of the run and closed at its end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import Connection, Engine

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.outbox.models import OutboxEntry

if TYPE_CHECKING:
    from ekiden.outbox.smtp import SmtpTransport


@dataclass
class Attempt:
    """The entry being delivered right now; the SMTP transport reads it for the bounce
    address (VERP) and notes the Message-ID it sent."""

    entry: OutboxEntry
    message_id: str | None = None


current_attempt: ContextVar[Attempt | None] = ContextVar("current_attempt", default=None)


@dataclass
class DeliveryContext:
    engine: Engine
    clock: Clock
    settings: Settings
    # what handlers keep for the rest of the run (bulk-loaded data of a group, caches)
    scratch: dict[str, Any] = field(default_factory=dict, init=False)
    _smtp: SmtpTransport | None = field(default=None, init=False)
    _http: httpx.Client | None = field(default=None, init=False)
    _conn: Connection | None = field(default=None, init=False)

    @contextlib.contextmanager
    def holding_connection(self) -> Iterator[None]:
        """Keep one database connection for the transactions opened inside (the outcomes
        of a group of deliveries): no pool checkout per outcome, nor, on PostgreSQL, the
        pool's ping. Closed at the end of the block."""
        if self._conn is not None:
            yield
            return
        self._conn = self.engine.connect()
        try:
            yield
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A transaction on the held connection (``holding_connection``), else on a
        connection of its own. A failed transaction drops the held connection: the next
        ones open their own."""
        conn = self._conn
        if conn is None:
            with self.engine.begin() as fresh:
                yield fresh
            return
        try:
            with conn.begin():
                yield conn
        except BaseException:
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
            raise

    @property
    def smtp(self) -> SmtpTransport:
        """The SMTP transport of this run (one pooled connection, opened on first use)."""
        if self._smtp is None:
            from ekiden.outbox.smtp import SmtpTransport

            self._smtp = SmtpTransport.from_settings(self.settings)
        return self._smtp

    @property
    def http(self) -> httpx.Client:
        """The HTTP client of this run (keeps connections alive between webhooks)."""
        if self._http is None:
            timeout = self.settings.webhook_timeout_seconds
            self._http = httpx.Client(
                timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                follow_redirects=False,
                headers={"user-agent": "Ekiden-Webhooks/1"},
            )
        return self._http

    def close(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None
        if self._http is not None:
            self._http.close()
            self._http = None
