"""E-mail address normalisation: the one place that decides what "the same address" means."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from ekiden.errors import Invalid


def normalise_email(raw: str) -> str:
    """Trim, validate syntax (no DNS look-up) and lower-case the domain.

    The local part keeps its case (RFC 5321 lets servers distinguish it), as DESIGN.md pins.
    Raises Invalid with the reason when the address is not valid.
    """
    text = raw.strip()
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise Invalid(f"invalid email address {text!r}: {exc}", code="invalid_email") from None
    local, _, domain = result.normalized.rpartition("@")
    return f"{local}@{domain.lower()}"
