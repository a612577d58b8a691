"""Build the demo once, then serve it with the worker running."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from rich.console import Console
from sqlalchemy import Engine, func, select

from ekiden.auth.keys import create_key
from ekiden.clock import FrozenClock, SystemClock
from ekiden.config import Settings
from ekiden.db import create_db_engine
from ekiden.demo.configure import HOT_LEAD, configure
from ekiden.demo.forms import FORMS, SEGMENTS
from ekiden.demo.sales import SalesDesk
from ekiden.demo.traffic import import_business_cards, play
from ekiden.forms.store import create_form
from ekiden.forms.tables import forms
from ekiden.scoring.service import leaders
from ekiden.segments.models import SegmentIn
from ekiden.segments.service import create_segment
from ekiden.tracking.tables import events
from ekiden.worker import Worker, default_periodic_steps, wait_until_idle

err = Console(stderr=True, highlight=False)
DEMO_DATABASE = "sqlite:///ekiden-demo.db"


@dataclass(frozen=True)
class Built:
    start: datetime
    end: datetime
    journeys: list[str]


def is_built(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(select(func.count()).select_from(forms)).scalar_one())


def build(engine: Engine, settings: Settings, *, visitors: int, weeks: int) -> Built:
    """The demo company's set-up (forms, segments, scores, stage rules, a hot-lead definition,
    salespeople, draft journeys), then ``weeks`` of traffic ending now, in simulated time: a
    business-card import on the way, the worker at the end of every simulated day (scores,
    stage moves, hot-lead alerts and call tasks happen when they would have), and the sales
    team working its hot leads (meetings, won deals with values, lost ones)."""
    end = datetime.now(settings.zone)
    start = end - timedelta(weeks=weeks)
    clock = FrozenClock(start)
    with engine.begin() as conn:
        for definition in FORMS:
            create_form(conn, clock, definition)
        for segment in SEGMENTS:
            create_segment(conn, clock, SegmentIn(**segment), settings.zone)
    configured = configure(engine, clock, settings)
    # no deliveries in the simulated past: the alert emails wait in the outbox for the
    # serving worker (they leave once EKIDEN_SMTP_URL and a sender address are set)
    steps = [step for step in default_periodic_steps() if step[0] != "outbox"]
    # decay is swept every third simulated day rather than hourly: the build stays quick
    swept = settings.model_copy(update={"score_sweep_minutes": 3 * 24 * 60})
    worker = Worker(
        engine, clock, swept, periodic_steps=steps, time_refresh_every=timedelta(hours=12)
    )
    desk = SalesDesk(engine, clock, settings.zone)

    def day_end() -> None:
        moment = clock.now()
        desk.work(moment)  # what sales did during the day, at its own time
        wait_until_idle(worker, timeout=300)
        desk.work(moment)  # plans for the hand-offs the worker just raised

    cards_at = max(start + timedelta(hours=1), end - timedelta(days=20))
    cards: list[int] = []
    err.print(f"playing {weeks} weeks of website traffic from {visitors} visitors …")
    identified = play(
        engine,
        settings,
        clock,
        visitors=visitors,
        weeks=weeks,
        day_end=day_end,
        scheduled=[(cards_at, lambda: cards.append(import_business_cards(engine, clock)))],
    )
    tally = desk.tally
    err.print(
        f"{identified} visitors identified themselves through forms; {sum(cards)} cards "
        "imported; "
        f"sales booked {tally.meetings} meetings from hot leads, won {tally.won} "
        f"(¥{tally.deal_total:,}), lost {tally.lost}, turned down {tally.rejected}"
    )
    return Built(start=start, end=end, journeys=configured.journeys)


def keys(engine: Engine) -> tuple[str, str]:
    clock = SystemClock()
    with engine.begin() as conn:
        admin = create_key(conn, clock, scope="admin", name="demo admin")
        ingest = create_key(conn, clock, scope="ingest", name="demo website")
    return admin, ingest


def _highlights(engine: Engine, settings: Settings) -> tuple[int | None, date, date]:
    """The contact with the highest behaviour score, and the demo period's first and last
    day (local), for the examples the announcement prints."""
    with engine.connect() as conn:
        top = leaders(conn, "behaviour", limit=1)
        first, last = conn.execute(
            select(func.min(events.c.occurred_at), func.max(events.c.occurred_at))
        ).one()
    today = datetime.now(settings.zone).date()
    return (
        top[0][0] if top else None,
        first.astimezone(settings.zone).date() if first else today,
        max(last.astimezone(settings.zone).date(), today) if last else today,
    )


def announce(settings: Settings, host: str, port: int, admin: str, ingest: str) -> None:
    base = f"http://{host}:{port}"
    engine = create_db_engine(settings.database_url)
    try:
        top, first, last = _highlights(engine, settings)
    finally:
        engine.dispose()
    auth = f'-H "Authorization: Bearer {admin}"'
    env = "" if os.environ.get("EKIDEN_DATABASE_URL") else f"EKIDEN_DATABASE_URL={DEMO_DATABASE} "
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
    ]
    tries = [
        ("segments", f"curl -s {auth} {base}/api/segments"),
        ("contacts", f'curl -s {auth} "{base}/api/contacts?limit=5"'),
        ("the hottest leads", f"curl -s {auth} {base}/api/scores/behaviour/leaders"),
    ]
    if top is not None:
        tries += [
            (f"why contact {top} has its score",
             f"curl -s {auth} {base}/api/contacts/{top}/scores"),
            ("its way through the stages",
             f"curl -s {auth} {base}/api/contacts/{top}/stage-history"),
        ]  # fmt: skip
    tries += [
        ("the sales call list", f"curl -s {auth} {base}/api/tasks"),
        ("hot-lead alerts and what sales made of them",
         f"curl -s {auth} {base}/api/hot-leads/definitions/{HOT_LEAD}/stats"),
        ("the example journeys (drafts)", f"curl -s {auth} {base}/api/journeys"),
        ("the funnel and the campaigns over the demo period",
         f"{env}.venv/bin/ekiden report funnel --from {first} --to {last}"),
        ("", f"{env}.venv/bin/ekiden report campaigns --from {first} --to {last}"),
        ("who a journey would have reached",
         f"{env}.venv/bin/ekiden journeys simulate --journey survey-sample --days 30"),
    ]  # fmt: skip
    for comment, command in tries:
        lines += [f"  # {comment}"] if comment else []
        lines.append(f"  {command}")
    lines.append("")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
