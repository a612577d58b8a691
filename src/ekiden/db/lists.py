"""``column IN (values)`` written the way each database handles best."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Connection, any_, bindparam


def one_of(
    conn: Connection, column: ColumnElement[Any], values: Collection[Any]
) -> ColumnElement[bool]:
    """``column`` equals one of ``values``.

    On PostgreSQL the values travel as one array parameter (``= ANY(%s)``): the statement's
    text does not change with the count, so the driver prepares it once and the server plans
    it once, where an ``IN`` list of 500 parameters is parsed and planned again every time.
    SQLite has no arrays and gets an ``IN`` list (callers keep lists under its parameter
    limit)."""
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))
