"""Shared fixtures: every database test runs on SQLite, and on PostgreSQL when
EKIDEN_TEST_POSTGRES_URL is set (CI sets it). Each run gets its own fresh PostgreSQL database,
dropped at the end; each test starts from empty tables."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from ekiden.auth.keys import create_key
from ekiden.clock import FrozenClock
from ekiden.config import Settings, load_settings
from ekiden.db import create_db_engine, metadata
from ekiden.db.migrate import migrate
from ekiden.web.app import create_app

PG_URL = os.environ.get("EKIDEN_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
START = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against EKIDEN_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection to close checkpoints and removes the WAL file
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test run on the server of EKIDEN_TEST_POSTGRES_URL."""
    if not PG_URL:
        pytest.skip("EKIDEN_TEST_POSTGRES_URL is not set")
    name = f"ekiden_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(drivername="postgresql+psycopg", database=name)
    url_text = url.render_as_string(hide_password=False)
    engine = create_db_engine(url_text)
    migrate(engine)
    engine.dispose()
    try:
        yield url_text
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _truncate_all(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty, migrated database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "ekiden.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_url")
        yield url
        engine = create_db_engine(url)
        _truncate_all(engine)
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def bench_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a benchmark command builds its scratch database: a file in the test's own
    directory, or (when configured) the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bench.db'}"
    if not PG_URL:
        pytest.skip("EKIDEN_TEST_POSTGRES_URL is not set")
    return PG_URL


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(
        database_url=db_url,
        secret_key="test-secret-key-" + "x" * 32,
        base_url="http://testserver",
    )


@pytest.fixture
def app(settings: Settings, engine: Engine, clock: FrozenClock) -> FastAPI:
    return create_app(settings, engine=engine, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def admin_key(engine: Engine, clock: FrozenClock) -> str:
    with engine.begin() as conn:
        return create_key(conn, clock, scope="admin", name="test admin")


@pytest.fixture
def ingest_key(engine: Engine, clock: FrozenClock) -> str:
    with engine.begin() as conn:
        return create_key(conn, clock, scope="ingest", name="test ingest")


@pytest.fixture
def admin(client: TestClient, admin_key: str) -> TestClient:
    """A client that sends the admin key on every request."""
    client.headers["Authorization"] = f"Bearer {admin_key}"
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """uvicorn serving ``app`` on a free loopback port in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("live server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def stored(engine: Engine) -> Callable[[], dict[str, list[tuple[object, ...]]]]:
    """A function returning every row of every table, for "nothing stored changed" checks."""

    def snapshot() -> dict[str, list[tuple[object, ...]]]:
        with engine.connect() as conn:
            return {
                table.name: sorted((tuple(row) for row in conn.execute(table.select())), key=repr)
                for table in metadata.sorted_tables
            }

    return snapshot
