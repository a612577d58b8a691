"""Reading a form POST body: url-encoded, multipart or JSON, at most MAX_BODY bytes.

Every format becomes the same shape, input name -> list of strings, so one validator serves
the hosted page, the embed and API callers alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs

import orjson
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import Message

from ekiden.errors import EkidenError, Malformed, TooLarge

MAX_BODY = 64 * 1024
MAX_INPUTS = 300


class UnsupportedType(EkidenError):
    status = 415
    code = "unsupported_media_type"


@dataclass
class Posted:
    """The submitted values, whether the caller wants JSON back, and what went wrong reading."""

    values: dict[str, list[str]] = field(default_factory=dict)
    wants_json: bool = False
    error: EkidenError | None = None

    def first(self, name: str) -> str | None:
        found = self.values.get(name)
        return found[0] if found else None


def _wants_json(request: Request, content_type: str) -> bool:
    if content_type == "application/json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def read_posted(request: Request) -> Posted:
    """Never raises for bad input: the handler answers in the format the caller wants."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    posted = Posted(wants_json=_wants_json(request, content_type))
    try:
        body = await _read_limited(request)
        if content_type == "application/json":
            posted.values = _from_json(body)
        elif content_type == "application/x-www-form-urlencoded":
            posted.values = _from_urlencoded(body)
        elif content_type == "multipart/form-data":
            posted.values = await _from_multipart(request, body)
        else:
            raise UnsupportedType(
                "Send the form as application/x-www-form-urlencoded, "
                "multipart/form-data or application/json."
            )
    except EkidenError as exc:
        posted.error = exc
    return posted


async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge("The form is too large.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge("The form is too large.")
        chunks.append(chunk)
    return b"".join(chunks)


def _unreadable() -> Malformed:
    return Malformed("The form data could not be read.")


def _from_json(body: bytes) -> dict[str, list[str]]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _unreadable() from None
    if not isinstance(data, dict) or len(data) > MAX_INPUTS:
        raise _unreadable()
    values: dict[str, list[str]] = {}
    for key, value in data.items():
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int | float | bool) or v is None for v in items):
            raise _unreadable()
        # JSON true / false map onto a ticked / unticked checkbox
        values[key] = [
            ("on" if v else "") if isinstance(v, bool) else "" if v is None else str(v)
            for v in items
        ]
    return values


def _from_urlencoded(body: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_INPUTS,
        )
    except (UnicodeDecodeError, ValueError):
        raise _unreadable() from None


async def _from_multipart(request: Request, body: bytes) -> dict[str, list[str]]:
    sent = False

    async def replay() -> Message:
        # The body was already read (to enforce the limit); hand it to the parser again.
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    again = Request(request.scope, replay)
    try:
        form = await again.form(max_files=0, max_fields=MAX_INPUTS)
    except (HTTPException, ValueError):
        raise _unreadable() from None
    values: dict[str, list[str]] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):  # pragma: no cover - max_files=0 refuses files
                raise _unreadable()
            values.setdefault(key, []).append(value)
    finally:
        await form.close()
    return values
