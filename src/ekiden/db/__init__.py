"""Database layer: one engine per process, Core tables per capability, Alembic migrations."""

from ekiden.db.engine import create_db_engine, is_postgres, is_sqlite
from ekiden.db.schema import metadata

__all__ = ["create_db_engine", "is_postgres", "is_sqlite", "metadata"]
