from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Engine

import ekiden.db.tables  # noqa: F401
from ekiden.config import ConfigError, load_settings
from ekiden.db import metadata


def test_migrations_match_the_declared_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, metadata) == []


def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.text == "ok"


def test_bad_setting_is_named_at_start_up() -> None:
    with pytest.raises(ConfigError, match="EKIDEN_DATABASE_URL"):
        load_settings(database_url="mysql://x")
    with pytest.raises(ConfigError, match="EKIDEN_TIME_ZONE"):
        load_settings(time_zone="Mars/Olympus")


def test_unknown_path_answers_error_shape(client: TestClient) -> None:
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_admin_endpoint_needs_admin_key(client: TestClient, ingest_key: str) -> None:
    assert client.get("/api/openapi.json").status_code == 200
