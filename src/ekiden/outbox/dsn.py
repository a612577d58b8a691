"""Reading bounce reports: delivery status notifications (RFC 3464) and complaint feedback
reports (ARF, RFC 5965), as raw RFC 5322 messages.

``parse_report`` returns one ``Report`` per failed recipient (a DSN's "delivered",
"relayed", "expanded" and "delayed" recipients are not failures and are left out); it raises
``Invalid`` for anything that is not a DSN or an ARF report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Literal

from ekiden.errors import Invalid

MAX_REPORT_BYTES = 10 * 1024 * 1024

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# headers where an MTA pipe leaves the envelope recipient (the VERP bounce address)
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")


@dataclass(frozen=True)
class Report:
    kind: Literal["hard", "soft", "complaint"]
    recipient: str | None  # the address that failed or complained
    status: str | None  # the enhanced status code, e.g. 5.1.1
    action: str | None  # failed (DSN); the feedback type (ARF)
    diagnostic: str | None
    original_message_id: str | None  # Message-ID of the message the report is about
    addressed_to: tuple[str, ...]  # addresses the report was sent to (VERP candidates)


def parse_report(raw: bytes) -> list[Report]:
    if not raw.strip():
        raise Invalid("the bounce message is empty")
    if len(raw) > MAX_REPORT_BYTES:
        raise Invalid(f"the bounce message is larger than {MAX_REPORT_BYTES} bytes")
    message = message_from_bytes(raw, policy=policy.compat32)
    if message.get_content_type() != "multipart/report":
        raise Invalid(
            "not a bounce report: expected Content-Type multipart/report "
            f"(RFC 3464 / RFC 5965), got {message.get_content_type()}"
        )
    report_type = str(message.get_param("report-type", "") or "").lower()
    addressed = _addressed_to(message)
    if report_type == "delivery-status":
        return _delivery_status(message, addressed)
    if report_type == "feedback-report":
        return [_feedback(message, addressed)]
    raise Invalid(
        f"unsupported report-type {report_type!r}: expected delivery-status or feedback-report"
    )


def _parts(message: Message) -> list[Message]:
    payload = message.get_payload()
    if not isinstance(payload, list):
        raise Invalid("the multipart/report has no parts")
    return [p for p in payload if isinstance(p, Message)]


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    return [HeaderParser().parsestr(block.strip() + "\n") for block in re.split(r"\n\s*\n", text)]


def _delivery_status(message: Message, addressed: tuple[str, ...]) -> list[Report]:
    parts = _parts(message)
    status_part = next(
        (p for p in parts if p.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        raise Invalid("the delivery status report has no message/delivery-status part")
    blocks = _field_blocks(status_part)
    recipients = [b for b in blocks[1:] if b.get("Final-Recipient") or b.get("Original-Recipient")]
    if not recipients:
        raise Invalid("the delivery status report names no Final-Recipient")
    original_id = _original_message_id(parts)
    reports: list[Report] = []
    for block in recipients:
        action = str(block.get("Action", "")).strip().lower()
        status = _status(str(block.get("Status", "")))
        if action != "failed":
            continue  # delivered, relayed, expanded; "delayed" is a warning, still trying
        hard = status is not None and status.startswith("5")
        reports.append(
            Report(
                kind="hard" if hard else "soft",
                recipient=_address(block.get("Final-Recipient") or block.get("Original-Recipient")),
                status=status,
                action=action,
                diagnostic=_clean(block.get("Diagnostic-Code")),
                original_message_id=original_id,
                addressed_to=addressed,
            )
        )
    return reports


def _feedback(message: Message, addressed: tuple[str, ...]) -> Report:
    parts = _parts(message)
    feedback = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if feedback is None:
        raise Invalid("the feedback report has no message/feedback-report part")
    blocks = _field_blocks(feedback)
    fields = blocks[0] if blocks else Message()
    if not fields.get("Feedback-Type"):
        raise Invalid("the feedback report has no Feedback-Type field")
    original = _original(parts)
    recipient = _address(fields.get("Original-Rcpt-To"))
    if recipient is None and original is not None:
        recipient = _address(original.get("To"))
    return Report(
        kind="complaint",
        recipient=recipient,
        status=None,
        action=str(fields.get("Feedback-Type")).strip().lower(),
        diagnostic=None,
        original_message_id=_original_message_id(parts),
        addressed_to=addressed + _return_path(original),
    )


def _original(parts: list[Message]) -> Message | None:
    """The returned message (or its headers) that the report is about."""
    for part in parts:
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                return HeaderParser().parsestr(text.decode("utf-8", "replace"))
    return None


def _original_message_id(parts: list[Message]) -> str | None:
    original = _original(parts)
    value = original.get("Message-ID") if original is not None else None
    return _clean(value)


def _return_path(original: Message | None) -> tuple[str, ...]:
    if original is None:
        return ()
    return tuple(
        a for _, a in getaddresses([str(v) for v in original.get_all("Return-Path", [])]) if a
    )


def _addressed_to(message: Message) -> tuple[str, ...]:
    values = [str(v) for name in _ENVELOPE_HEADERS for v in message.get_all(name, [])]
    return tuple(a for _, a in getaddresses(values) if a)


def _address(value: object) -> str | None:
    """``rfc822; user@example.com`` → ``user@example.com``."""
    if value is None:
        return None
    text = str(value).strip()
    if ";" in text:
        text = text.split(";", 1)[1].strip()
    text = text.strip("<>").strip()
    return text or None


def _status(value: str) -> str | None:
    match = _STATUS.search(value)
    return None if match is None else ".".join(match.groups())


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text[:1000] or None
