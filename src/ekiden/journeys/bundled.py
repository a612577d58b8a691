"""The example journeys shipped with the product (``ekiden/journeys/examples/*.yaml``).

Each file holds what one scenario needs to run::

    emails: [<email template>, …]   # created when no template has that key
    forms: [<form definition>, …]   # created when no form has that slug
    journey: <journey definition>   # created as a draft when no journey has that key

``load_examples`` stores them all in one transaction; what exists already is left as it is,
so loading twice changes nothing and a marketer's edits are never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import Connection, select

from ekiden.clock import Clock
from ekiden.errors import EkidenError, Invalid
from ekiden.journeys import service
from ekiden.journeys.tables import journeys


@dataclass(frozen=True)
class Example:
    file: str
    key: str
    name: str
    description: str
    emails: list[dict[str, Any]]
    forms: list[dict[str, Any]]
    journey: dict[str, Any]


@dataclass
class Loaded:
    """What ``load_examples`` created (keys / slugs); the rest existed already."""

    journeys: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    forms: list[str] = field(default_factory=list)


def examples() -> list[Example]:
    """The shipped examples, in file-name order."""
    found: list[Example] = []
    folder = resources.files("ekiden.journeys") / "examples"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        raw = yaml.safe_load(entry.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("journey"), dict):
            raise Invalid(f"example {entry.name}: no journey in the file")
        journey = raw["journey"]
        found.append(
            Example(
                file=entry.name,
                key=str(journey.get("key")),
                name=str(journey.get("name")),
                description=str(journey.get("description", "")),
                emails=list(raw.get("emails") or []),
                forms=list(raw.get("forms") or []),
                journey=journey,
            )
        )
    return found


def load_examples(conn: Connection, clock: Clock, zone: ZoneInfo) -> Loaded:
    """Create every example journey (as a draft) with the templates and forms it needs.

    Anything that exists already (same key or slug) is kept unchanged. Invalid names the
    example file when one of its parts is refused (nothing is stored then)."""
    loaded = Loaded()
    for example in examples():
        try:
            _load(conn, clock, zone, example, loaded)
        except EkidenError as exc:
            raise Invalid(f"example {example.file}: {exc.message}", code=exc.code) from None
    return loaded


def _load(conn: Connection, clock: Clock, zone: ZoneInfo, example: Example, loaded: Loaded) -> None:
    from ekiden.forms.store import create_form
    from ekiden.forms.tables import forms
    from ekiden.messaging.models import EmailTemplateIn
    from ekiden.messaging.store import create_template
    from ekiden.messaging.tables import email_templates

    for email in example.emails:
        taken = conn.execute(
            select(email_templates.c.id).where(email_templates.c.key == email["key"])
        ).first()
        if taken is None:
            create_template(conn, clock, EmailTemplateIn.model_validate(email))
            loaded.emails.append(email["key"])
    for form in example.forms:
        taken = conn.execute(select(forms.c.id).where(forms.c.slug == form["slug"])).first()
        if taken is None:
            create_form(conn, clock, form)
            loaded.forms.append(form["slug"])
    taken = conn.execute(select(journeys.c.id).where(journeys.c.key == example.key)).first()
    if taken is None:
        service.create_journey(conn, clock, example.journey, zone)
        loaded.journeys.append(example.key)
