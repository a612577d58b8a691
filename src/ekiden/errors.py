"""The one error type services raise; the web layer maps it to {"error": {...}} answers."""

from __future__ import annotations

from typing import Any


class EkidenError(Exception):
    """A request Ekiden refuses, with a stable machine code and a human message.

    ``status`` is the HTTP status the web layer answers with; the CLI prints the message and
    exits non-zero. ``details`` carries structured context (e.g. the offending field).
    """

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class Malformed(EkidenError):
    status = 400
    code = "malformed"


class Unauthorized(EkidenError):
    status = 401
    code = "unauthorized"


class Forbidden(EkidenError):
    status = 403
    code = "forbidden"


class NotFound(EkidenError):
    status = 404
    code = "not_found"


class Conflict(EkidenError):
    status = 409
    code = "conflict"


class TooLarge(EkidenError):
    status = 413
    code = "too_large"


class Invalid(EkidenError):
    status = 422
    code = "invalid"
