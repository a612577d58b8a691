"""Scratch databases for benchmarks: created fresh, migrated, and removed afterwards."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ekiden.db import create_db_engine
from ekiden.db.engine import normalise_url
from ekiden.db.migrate import migrate


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A new, migrated database on the same kind of server as ``url``; dropped on exit.

    SQLite: a file in a new temporary directory (the path in ``url`` is not touched).
    PostgreSQL: ``CREATE DATABASE ekiden_bench_<random>`` on the server ``url`` names,
    dropped with ``WITH (FORCE)`` at the end.
    """
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="ekiden-bench-"))
        scratch = f"sqlite:///{folder / 'bench.db'}"
        try:
            _migrate(scratch)
            yield scratch
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = f"ekiden_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = make_url(normalise_url(url)).set(database=name).render_as_string(hide_password=False)
    try:
        _migrate(scratch)
        yield scratch
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate(url: str) -> None:
    engine = create_db_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
