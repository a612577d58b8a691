"""Keyset pagination: lists answer {"items": [...], "next": <cursor or null>}.

A cursor is an opaque URL-safe string holding the sort key of the last item returned;
the next page continues strictly after it, so pages never skip or repeat rows even while
rows are being added.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from ekiden.errors import Malformed

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next: str | None


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, fields: tuple[str, ...]) -> dict[str, Any] | None:
    """The sort key inside ``cursor``; Malformed (400) when it was not made by us."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise Malformed("the cursor is not valid; pass back the `next` value unchanged") from None
    if not isinstance(key, dict) or set(key) != set(fields):
        raise Malformed("the cursor is not valid; pass back the `next` value unchanged")
    return key


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise Malformed(f"limit must be between 1 and {MAX_LIMIT}")
    return limit
