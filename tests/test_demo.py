"""`ekiden demo` builds a working demo on a fresh embedded database (the README's first
command runs exactly this, then serves it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from ekiden.cli import app
from ekiden.contacts.tables import contacts
from ekiden.db import create_db_engine
from ekiden.segments.tables import segments
from ekiden.tracking.tables import events


def test_demo_builds_contacts_history_and_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EKIDEN_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["demo", "--build-only", "--visitors", "60", "--weeks", "3"])
    assert result.exit_code == 0, result.output
    assert "admin key: ek_ad_" in result.output
    engine = create_db_engine(f"sqlite:///{tmp_path / 'ekiden-demo.db'}")
    with engine.connect() as conn:
        known = conn.execute(select(func.count()).select_from(contacts)).scalar_one()
        dwell = conn.execute(
            select(func.count()).where(events.c.type == "page_dwell", events.c.dwell_ms > 0)
        ).scalar_one()
        attributed = conn.execute(
            select(func.count()).where(events.c.type == "page", events.c.contact_id.is_not(None))
        ).scalar_one()
        built = conn.execute(select(segments.c.slug, segments.c.built_version)).all()
    engine.dispose()
    assert known >= 40  # identified visitors plus 40 imported business cards
    assert dwell > 0
    assert attributed > 0  # anonymous page views joined the visitors who filled in a form
    assert {slug for slug, _ in built} == {"hot-bucho", "case-study-readers", "webinar-registrants"}
    assert all(version == 1 for _, version in built)
    again = CliRunner().invoke(app, ["demo", "--build-only"])
    assert again.exit_code == 0
    assert "exists already" in again.output
