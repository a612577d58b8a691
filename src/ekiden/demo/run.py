"""Build the demo once, then serve it with the worker running."""

from __future__ import annotations

import sys
from datetime import timedelta

from rich.console import Console
from sqlalchemy import Engine, func, select

from ekiden.auth.keys import create_key
from ekiden.clock import SystemClock
from ekiden.config import Settings
from ekiden.demo.forms import FORMS, SEGMENTS
from ekiden.demo.traffic import import_business_cards, play
from ekiden.forms.store import create_form
from ekiden.forms.tables import forms
from ekiden.segments.models import SegmentIn
from ekiden.segments.service import create_segment
from ekiden.worker import Worker

err = Console(stderr=True, highlight=False)


def is_built(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(forms)).scalar_one())


def build(engine: Engine, settings: Settings, *, visitors: int, weeks: int) -> None:
    """Forms, segments, a business-card import and ``weeks`` of traffic, in simulated time."""
    clock = SystemClock()
    with engine.begin() as conn:
        for definition in FORMS:
            create_form(conn, clock, definition)
        for segment in SEGMENTS:
            create_segment(conn, clock, SegmentIn(**segment), settings.zone)
    err.print(f"playing {weeks} weeks of website traffic from {visitors} visitors …")
    identified = play(engine, settings, visitors=visitors, weeks=weeks)
    cards = import_business_cards(engine, settings)
    Worker(engine, clock, settings, time_refresh_every=timedelta(0)).run_once()
    err.print(f"{identified} visitors identified themselves through forms; {cards} cards imported")


def keys(engine: Engine) -> tuple[str, str]:
    clock = SystemClock()
    with engine.begin() as conn:
        admin = create_key(conn, clock, scope="admin", name="demo admin")
        ingest = create_key(conn, clock, scope="ingest", name="demo website")
    return admin, ingest


def announce(settings: Settings, host: str, port: int, admin: str, ingest: str) -> None:
    base = f"http://{host}:{port}"
    lines = [
        "",
        "Ekiden demo is running (Ctrl+C to stop).",
        f"  demo website with tracking: {base}/demo/",
        f"  hosted form:                {base}/f/ma-guide",
        f"  REST API (OpenAPI):         {base}/api/docs",
        f"  admin API key:              {admin}",
        f"  ingest (write) key:         {ingest}",
        "",
        "Try:",
        f'  curl -s -H "Authorization: Bearer {admin}" {base}/api/segments',
        f'  curl -s -H "Authorization: Bearer {admin}" "{base}/api/contacts?limit=5"',
        "",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
