"""The bridge from sending to composition: one ready message for one recipient."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import Connection

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.messaging.compose import compose


def compose_message(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    *,
    template_key: str,
    version: int,
    contact_id: int,
    message_id: int,
    send_id: int | None,
    variant: str | None = None,
    subject: str | None = None,
    to: str | None = None,
) -> EmailMessage:
    """The message of template ``template_key`` version ``version`` for the contact, with
    tracking tokens carrying ``message_id`` and the stable Message-ID built from it.
    ``subject`` replaces the template's subject (an A/B variant); ``to`` replaces the
    contact's address (a test send). The campaign (``utm_campaign``) is ``send-<id>`` for a
    send's messages and the template key for single messages."""
    return compose(
        conn,
        clock,
        settings,
        template=template_key,
        version=version,
        contact_id=contact_id,
        message_id=message_id,
        send_key=send_key_of(send_id),
        ab_variant=variant,
        overrides=None if subject is None else {"subject": subject},
        to=to,
    )


def send_key_of(send_id: int | None) -> str:
    """The campaign key (``utm_campaign``, the tokens' ``send``) of a send's messages;
    empty for single messages (the template key is used then)."""
    return "" if send_id is None else f"send-{send_id}"
