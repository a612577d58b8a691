"""Incremental scoring (the worker, event by event, plus the time-driven sweep) ends where a
full recompute from nothing ends, for random histories of events, profile changes and time."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import contacts
from ekiden.scoring import definitions
from ekiden.scoring.examples import BEHAVIOUR, FIT
from ekiden.scoring.models import ScoreIn
from ekiden.scoring.service import recompute_scores
from ekiden.scoring.tables import contact_scores, score_awards, score_definitions, score_history
from ekiden.segments.tables import dirty_contacts
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events
from ekiden.worker import Worker, wait_until_idle

PAGES = ["/pricing", "/products/ma", "/careers", "/catalog/a", "/blog", "/case-studies/x"]
FORMS = ["document-a", "document-b", "webinar"]
TITLES = ["部長", "課長", "担当", None]


@st.composite
def actions(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["page", "page", "dwell", "form", "title", "wait"]))
    action: dict[str, Any] = {"kind": kind, "who": draw(st.integers(0, 2))}
    if kind == "page":
        action["path"] = draw(st.sampled_from(PAGES))
    elif kind == "dwell":
        action["path"] = draw(st.sampled_from(PAGES))
        action["dwell_ms"] = draw(st.sampled_from([10_000, 130_000, 600_000]))
    elif kind == "form":
        action["form"] = draw(st.sampled_from(FORMS))
    elif kind == "title":
        action["title"] = draw(st.sampled_from(TITLES))
    else:
        action["hours"] = draw(st.sampled_from([1, 20, 24 * 3, 24 * 8, 24 * 40]))
    action["machine"] = draw(st.booleans()) and kind in ("page", "form")
    # events may arrive late: dated up to two days back
    action["late_hours"] = draw(st.sampled_from([0, 0, 5, 47]))
    return action


def _apply(engine: Engine, clock: FrozenClock, ids: list[int], action: dict[str, Any]) -> None:
    who = ids[action["who"]]
    at = clock.now() - timedelta(hours=action["late_hours"])
    if action["kind"] == "wait":
        clock.advance(timedelta(hours=action["hours"]))
        return
    with engine.begin() as conn:
        if action["kind"] == "title":
            upsert_contact(
                conn,
                clock,
                email=f"p{action['who']}@example.co.jp",
                changes=ContactChanges(job_title=action["title"]),
                source_kind="api",
            )
            return  # fmt: skip
        event = NewEvent(type="page", occurred_at=at, source="api", contact_id=who,
                         machine=action["machine"])  # fmt: skip
        if action["kind"] == "page":
            event.path = action["path"]
        elif action["kind"] == "dwell":
            event.type, event.path, event.dwell_ms = (
                "page_dwell",
                action["path"],
                action["dwell_ms"],
            )
        else:
            event.type, event.properties = "form_submitted", {"form": action["form"]}
        record_events(conn, clock, [event])


def _values(engine: Engine) -> dict[tuple[int, str], float]:
    with engine.connect() as conn:
        rows = conn.execute(select(contact_scores.c.contact_id, contact_scores.c.score_key,
                                   contact_scores.c.value))  # fmt: skip
        return {(r.contact_id, r.score_key): round(r.value, 6) for r in rows}


@settings(
    max_examples=int(os.environ.get("EKIDEN_HYPOTHESIS_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=st.lists(actions(), min_size=1, max_size=12))
def test_incremental_scores_equal_a_full_recompute(
    engine: Engine, clock: FrozenClock, settings: Settings, history: list[dict[str, Any]]
) -> None:
    with engine.begin() as conn:
        for table in (score_history, score_awards, contact_scores, score_definitions,
                      dirty_contacts, events, contacts):  # fmt: skip
            conn.execute(delete(table))
        for data in (BEHAVIOUR, FIT):
            definitions.create_score(conn, clock, ScoreIn.model_validate(data), settings.zone)
        recompute_scores(conn, clock, settings)
        ids = [
            upsert_contact(conn, clock, email=f"p{i}@example.co.jp",
                           changes=ContactChanges(job_title="課長"), source_kind="api").contact_id
            for i in range(3)
        ]  # fmt: skip
    worker = Worker(engine, clock, settings)
    wait_until_idle(worker)
    for action in history:
        _apply(engine, clock, ids, action)
        wait_until_idle(worker)
    # the sweep brings decay and expiry up to now for contacts without new activity
    clock.advance(timedelta(minutes=settings.score_sweep_minutes))
    wait_until_idle(worker)
    incremental = _values(engine)
    with engine.begin() as conn:
        conn.execute(delete(score_awards))
        conn.execute(delete(contact_scores))
        recompute_scores(conn, clock, settings)
    assert _values(engine) == incremental
