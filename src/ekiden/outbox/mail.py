"""Outbox kind "mail": a plain system notification (e.g. a hot-lead alert to a sales user).

Payload: ``{"to": [str], "subject": str, "text": str, "html": str | None}``. Sent from
``mail_from`` (else ``email_sender_address``) through the SMTP transport; marketing rules
(consent, unsubscribe) do not apply: the recipients are the company's own users.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from ekiden.config import Settings
from ekiden.outbox.context import DeliveryContext
from ekiden.outbox.handlers import AfterSent, register_handler
from ekiden.outbox.models import DeliveryError, OutboxEntry


def build_notification(settings: Settings, entry: OutboxEntry, when: Any) -> EmailMessage:
    payload = entry.payload
    to = payload.get("to")
    subject = payload.get("subject")
    text = payload.get("text")
    html = payload.get("html")
    if not isinstance(to, list) or not to or not all(isinstance(a, str) and a for a in to):
        raise DeliveryError(
            "mail payload needs 'to': a non-empty list of addresses", permanent=True
        )
    if not isinstance(subject, str) or not isinstance(text, str):
        raise DeliveryError("mail payload needs 'subject' and 'text' strings", permanent=True)
    sender = settings.mail_from or settings.email_sender_address
    if not sender:
        raise DeliveryError(
            "no sender for notifications: set EKIDEN_MAIL_FROM or EKIDEN_EMAIL_SENDER_ADDRESS",
            permanent=False,
        )
    message = EmailMessage()
    message["From"] = sender if "<" in sender else Address(addr_spec=sender)
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to alerts
    message.set_content(text)
    if isinstance(html, str) and html:
        message.add_alternative(html, subtype="html")
    return message


def deliver_mail(context: DeliveryContext, entry: OutboxEntry) -> AfterSent | None:
    message = build_notification(context.settings, entry, context.clock.now())
    context.smtp.send(message)
    return None


register_handler("mail", deliver_mail)
