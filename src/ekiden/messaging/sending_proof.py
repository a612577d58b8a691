"""Test sends (proofs): one rendering of a template to any address, at once, marked as a test."""

from __future__ import annotations

from email.utils import make_msgid
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.emails import normalise_email
from ekiden.errors import Invalid
from ekiden.i18n import gettext
from ekiden.messaging.sending import pinned_template
from ekiden.messaging.sending_compose import compose_message
from ekiden.outbox import DeliveryError


class ProofIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(description="where the test goes (any address, not necessarily a contact)")
    contact_id: int = Field(description="render for this contact (personalisation, blocks)")
    template_version: int | None = Field(None, ge=1, description="default the current version")

    @field_validator("to")
    @classmethod
    def _to(cls, value: str) -> str:
        try:
            return normalise_email(value)
        except Invalid as exc:
            raise ValueError(exc.message) from None


class ProofSent(BaseModel):
    to: str
    subject: str
    message_id: str


def send_proof(
    conn: Connection, clock: Clock, settings: Settings, key: str, data: ProofIn
) -> ProofSent:
    """Render for ``data.contact_id`` and send at once to ``data.to``. The subject is prefixed
    "[TEST]" (translated), the message carries ``X-Ekiden-Test: yes`` and a Message-ID of
    its own; its tracking tokens name no message (id 0), so opens and clicks of a test
    never count. NotFound for an unknown template, version or contact; Invalid when the
    SMTP server refuses it."""
    from ekiden.outbox.smtp import SmtpTransport

    version, _ = pinned_template(conn, key, data.template_version)
    message = compose_message(
        conn,
        clock,
        settings,
        template_key=key,
        version=version,
        contact_id=data.contact_id,
        message_id=0,
        send_id=None,
        to=data.to,
    )
    subject = f"{gettext(settings.default_locale, '[TEST]')} {message['Subject']}"
    del message["Subject"], message["Message-ID"]
    message["Subject"] = subject
    message["Message-ID"] = make_msgid("test", domain=urlsplit(settings.base_url).hostname)
    message["X-Ekiden-Test"] = "yes"
    transport = SmtpTransport.from_settings(settings)
    try:
        transport.send(message)
    except DeliveryError as exc:
        raise Invalid(f"the SMTP server did not take the test: {exc.reason}") from None
    finally:
        transport.close()
    return ProofSent(to=data.to, subject=subject, message_id=str(message["Message-ID"]))
