"""Typed views of outbox rows and the error contract of delivery handlers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DeliveryError(Exception):
    """Raised by a handler or transport when a side effect could not be delivered.

    ``permanent=False`` (a timeout, an SMTP 4xx, an HTTP 5xx) retries later with backoff;
    ``permanent=True`` (an SMTP 5xx, an HTTP 4xx) records the failure and never retries.
    """

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    contact_id: int | None
    status: Status
    attempts: int
    due_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime
    message_id: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> OutboxEntry:
        return cls(
            id=int(row["id"]),
            kind=row["kind"],
            key=row["key"],
            payload=dict(row["payload"]),
            contact_id=row["contact_id"],
            status=Status(row["status"]),
            attempts=int(row["attempts"]),
            due_at=row["due_at"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            sent_at=row["sent_at"],
            created_at=row["created_at"],
            message_id=row["message_id"],
        )
