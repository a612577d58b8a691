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

from pydantic import Field, ValidationError, field_validator
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
