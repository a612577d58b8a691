"""Alembic environment: runs on the connection handed over by ekiden.db.migrate."""

from __future__ import annotations

from alembic import context

import ekiden.db.tables  # noqa: F401  (registers every table on metadata)
from ekiden.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
