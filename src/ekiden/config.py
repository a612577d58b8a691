"""Settings from environment variables (``EKIDEN_*``) or an ``ekiden.toml`` file.

Environment variables win over the file. The file is looked up in the working directory,
or wherever ``EKIDEN_CONFIG`` points. Bad values fail at start-up with the setting's name.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SUPPORTED_LOCALES = ("ja", "en")


class ConfigError(Exception):
    """A setting has a value Ekiden cannot work with; the message names the setting."""


def _toml_path() -> Path:
    return Path(os.environ.get("EKIDEN_CONFIG", "ekiden.toml"))


class Settings(BaseSettings):
    """Every setting Ekiden reads. ``docs/CONFIGURATION.md`` is generated from this class."""

    model_config = SettingsConfigDict(env_prefix="EKIDEN_", extra="forbid", frozen=True)

    database_url: str = Field(
        "sqlite:///ekiden.db",
        description="SQLAlchemy URL of the database: sqlite:///FILE or postgresql://user@host/db.",
    )
    secret_key: str = Field(
        "",
        description="Secret for signing tokens and sessions. Required outside the demo; "
        "at least 32 characters.",
    )
    base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Public URL of this server, used in tracking links, forms and the snippet.",
    )
    smtp_url: str = Field(
        "", description="smtp://user:pass@host:port (STARTTLS when offered) or smtps:// for TLS."
    )
    default_locale: str = Field("ja", description="Language of user-facing text: ja or en.")
    time_zone: str = Field("Asia/Tokyo", description="Time zone for showing times and days.")
    max_event_bytes: int = Field(32 * 1024, description="Largest accepted single event, bytes.")
    max_batch_bytes: int = Field(500 * 1024, description="Largest accepted batch request, bytes.")
    cookie_days: int = Field(
        395, description="Lifetime of the browser snippet's anonymous-id cookie, in days."
    )
    score_sweep_minutes: int = Field(
        60,
        ge=1,
        description="How often scores are re-evaluated for the passage of time alone (decay, "
        "expiry, relative dates in profile rules), in minutes.",
    )
    email_sender_name: str = Field(
        "", description="Default sender name of email (the From name and the footer's sender)."
    )
    email_sender_address: str = Field(
        "", description="Default sender address of email (From); a template may override it."
    )
    email_postal_address: str = Field(
        "",
        description="The sender's physical address, printed in every email's footer "
        "(特定電子メール法).",
    )
    email_site_domains: str = Field(
        "",
        description="Comma-separated domains of the company's sites; links to them in email get "
        "UTM parameters (utm_source=ekiden, utm_medium=email).",
    )
    email_unsubscribe_mailto: str = Field(
        "",
        description="Optional address for mailto: unsubscribe requests in List-Unsubscribe, "
        "besides the one-click https URL.",
    )
    email_machine_click_seconds: int = Field(
        10,
        description="Seconds: a click on an email link this soon after delivery, or clicks on "
        "every link of a message within this time, are flagged as machine activity (R9).",
    )
    email_quiet_hours: str = Field(
        "",
        description="Hours when marketing email waits, in the contact's time zone (else "
        "time_zone), e.g. 21:00-08:00; empty: no quiet hours. Transactional mail is not held.",
    )
    email_frequency_cap: int = Field(
        0,
        description="At most this many marketing emails per contact within "
        "email_frequency_days; further ones are skipped. 0: no cap.",
    )
    email_frequency_days: int = Field(7, description="The window of email_frequency_cap, in days.")

    smtp_rate_per_second: float = Field(
        0,
        description="Most messages per second sent to the SMTP provider by one worker "
        "(the provider's limit); 0: no limit.",
    )
    smtp_timeout_seconds: float = Field(
        30, description="Timeout of SMTP connections and commands, in seconds."
    )
    dkim_domain: str = Field(
        "", description="Domain that signs outgoing mail with DKIM (d=), e.g. example.co.jp."
    )
    dkim_selector: str = Field(
        "", description="DKIM selector (s=): the public key is at SELECTOR._domainkey.DOMAIN."
    )
    dkim_private_key_path: str = Field(
        "",
        description="PEM file with the DKIM private key (RSA, 2048 bits advised); with "
        "dkim_domain and dkim_selector set, every message is signed. Empty: no signing.",
    )
    mail_from: str = Field(
        "",
        description="Sender of system notifications (alerts to sales users), e.g. "
        "Ekiden <noreply@example.co.jp>; empty: email_sender_address.",
    )
    bounce_address: str = Field(
        "",
        description="Envelope sender for bounces, e.g. bounces@mail.example.co.jp; each "
        "message gets bounces+TAG@… (VERP) so a bounce names the message. Empty: the From.",
    )
    bounce_key: str = Field(
        "",
        description="Key an MTA may send as a Bearer token to POST /api/bounces (besides "
        "admin keys); at least 32 characters. Empty: admin keys only.",
    )
    soft_bounce_limit: int = Field(
        3,
        description="Soft bounces within soft_bounce_days after which a contact is suppressed.",
    )
    soft_bounce_days: int = Field(7, description="The window of soft_bounce_limit, in days.")
    webhook_secret: str = Field(
        "",
        description="Standard Webhooks signing secret (whsec_ + base64); signed webhooks carry "
        "webhook-id, webhook-timestamp and webhook-signature headers.",
    )
    webhook_timeout_seconds: float = Field(
        10, description="Timeout of one webhook call, in seconds."
    )
    outbox_lease_seconds: int = Field(
        300,
        description="How long a worker holds a claimed delivery; after a crash the delivery is "
        "retried once the lease has expired.",
    )
    outbox_max_attempts: int = Field(
        10, description="Delivery attempts before a temporary failure becomes permanent."
    )
    outbox_concurrency: int = Field(
        4,
        description="Deliveries one worker runs at a time (each with its own SMTP connection); "
        "1: one after the other.",
    )
    outbox_retry_base_seconds: int = Field(
        60,
        description="First retry delay after a temporary failure; it doubles per attempt "
        "(±25 % jitter, at most six hours).",
    )
    sales_team_emails: str = Field(
        "",
        description="Comma-separated addresses of the sales team: hot-lead alerts go there "
        "when a lead has no owner and its definition names no recipients.",
    )
    sales_webhook_url: str = Field(
        "",
        description="Slack-compatible incoming-webhook URL for hot-lead and upsell alerts, "
        "used when a hot-lead definition sets none. Empty: no chat message.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_path())
        return (init_settings, env_settings, toml)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("smtp", "smtps"):
            raise ValueError("must start with smtp:// or smtps://")
        return value

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if value not in SUPPORTED_LOCALES:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_LOCALES)}")
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name such as Asia/Tokyo") from None
        return value

    @field_validator("email_sender_address", "email_unsubscribe_mailto")
    @classmethod
    def _email_address(cls, value: str) -> str:
        if not value.strip():
            return ""
        from ekiden.contacts.emails import normalise_email
        from ekiden.errors import Invalid

        try:
            return normalise_email(value)
        except Invalid as exc:
            raise ValueError(
                f"must be an email address such as info@example.co.jp ({exc})"
            ) from None

    @field_validator("email_site_domains")
    @classmethod
    def _site_domains(cls, value: str) -> str:
        domains = [d.strip().lower() for d in value.split(",") if d.strip()]
        for domain in domains:
            if "/" in domain or ":" in domain or "." not in domain or " " in domain:
                raise ValueError(f"{domain!r} is not a domain name such as www.example.co.jp")
        return ",".join(domains)

    @field_validator("email_machine_click_seconds")
    @classmethod
    def _click_seconds(cls, value: int) -> int:
        if not 0 <= value <= 3600:
            raise ValueError("must be between 0 and 3600 seconds")
        return value

    @field_validator("email_quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        from ekiden.messaging.sending_policy import parse_quiet_hours

        parse_quiet_hours(value)
        return value.strip()

    @field_validator("email_frequency_cap", "email_frequency_days")
    @classmethod
    def _non_negative(cls, value: int) -> int:
        if not 0 <= value <= 10_000:
            raise ValueError("must be between 0 and 10000")
        return value

    @field_validator("dkim_private_key_path")
    @classmethod
    def _dkim_key(cls, value: str, info: ValidationInfo) -> str:
        if value:
            from ekiden.outbox.dkim import load_private_key

            missing = [n for n in ("dkim_domain", "dkim_selector") if not info.data.get(n)]
            if missing:
                names = " and ".join(f"EKIDEN_{n.upper()}" for n in missing)
                raise ValueError(f"needs {names} as well")
            load_private_key(value)
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: str) -> str:
        if value:
            from ekiden.outbox.signing import decode_secret

            decode_secret(value)
        return value

    @field_validator("sales_team_emails")
    @classmethod
    def _sales_team_emails(cls, value: str) -> str:
        from ekiden.contacts.emails import normalise_email
        from ekiden.errors import Invalid

        addresses = [a.strip() for a in value.split(",") if a.strip()]
        try:
            return ",".join(normalise_email(a) for a in addresses)
        except Invalid as error:
            raise ValueError(error.message) from None

    @field_validator("sales_webhook_url")
    @classmethod
    def _sales_webhook_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @field_validator("bounce_key")
    @classmethod
    def _bounce_key(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator(
        "smtp_rate_per_second",
        "smtp_timeout_seconds",
        "webhook_timeout_seconds",
        "outbox_lease_seconds",
        "outbox_max_attempts",
        "outbox_concurrency",
        "outbox_retry_base_seconds",
        "soft_bounce_limit",
        "soft_bounce_days",
    )
    @classmethod
    def _positive_delivery_number(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @cached_property
    def signing_key(self) -> bytes:
        """The secret key, or a per-process random one when none is set (tokens then die with
        the process, which is acceptable for the demo and tests only)."""
        return (self.secret_key or _EPHEMERAL_SECRET).encode()

    @property
    def site_domains(self) -> tuple[str, ...]:
        """The company's site domains from ``email_site_domains``."""
        return tuple(d for d in self.email_site_domains.split(",") if d)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


_EPHEMERAL_SECRET = secrets.token_urlsafe(48)


def load_settings(**overrides: Any) -> Settings:
    """Read settings; raise ConfigError naming every bad setting and its accepted values."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"EKIDEN_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
