"""``ekiden scores …``: list, show, apply and recompute scores, and explain a contact's."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.errors import EkidenError, NotFound
from ekiden.scoring import definitions, service
from ekiden.scoring.models import ScoreIn

scores_app = typer.Typer(no_args_is_help=True, help="Rule-based scores.")
err = Console(stderr=True, highlight=False)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


@scores_app.command("list")
def list_command() -> None:
    """List scores with their rule counts and whether values follow the current rules."""
    settings = load_settings()
    with create_db_engine(settings.database_url).connect() as conn:
        found = definitions.list_scores(conn)
    table = Table("key", "name", "rules", "up to date", "recomputed")
    for s in found:
        when = s.recomputed_at.astimezone(settings.zone).isoformat() if s.recomputed_at else "-"
        table.add_row(s.key, s.name, str(len(s.rules)), "yes" if s.built else "no", when)
    Console().print(table)


@scores_app.command("show")
def show_command(
    key: Annotated[str, typer.Argument(help="The score's key, e.g. behaviour.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print a score's definition as YAML (or JSON), ready for ``ekiden scores apply``."""
    settings = load_settings()
    try:
        with create_db_engine(settings.database_url).connect() as conn:
            score = definitions.get_score(conn, key)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    data = score.as_input().model_dump(mode="json", exclude_none=True)
    if as_json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def _read(path: Path) -> ScoreIn:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    try:
        return ScoreIn.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        ]
        raise _fail(f"{path}: " + "; ".join(problems[:5])) from None


@scores_app.command("apply")
def apply_command(
    definition: Annotated[Path, typer.Argument(help="A score definition as YAML or JSON.")],
    recompute: Annotated[
        bool, typer.Option(help="Recompute every contact's value now (else the worker does).")
    ] = True,
) -> None:
    """Create the score, or replace its definition and rules, from a file."""
    settings = load_settings()
    data = _read(definition)
    clock = SystemClock()
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            try:
                definitions.get_score(conn, data.key)
            except NotFound:
                definitions.create_score(conn, clock, data, settings.zone)
                verb = "created"
            else:
                definitions.replace_score(conn, clock, data.key, data, settings.zone)
                verb = "replaced"
            if recompute:
                done = service.recompute_scores(conn, clock, settings, score_keys=[data.key])
    except EkidenError as exc:
        raise _fail(exc.message) from None
    err.print(f"{verb} score {data.key} with {len(data.rules)} rule(s)")
    if recompute:
        err.print(f"recomputed: {done.contacts} value(s) changed in {done.seconds:.1f} s")


@scores_app.command("recompute")
def recompute_command(
    keys: Annotated[
        list[str] | None, typer.Argument(help="Scores to recompute (default: all).")
    ] = None,
) -> None:
    """Full recompute for the whole population (after rule changes; normally the worker
    does this by itself)."""
    settings = load_settings()
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            done = service.recompute_scores(conn, SystemClock(), settings, score_keys=keys or None)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    err.print(
        f"recomputed {done.scores} score(s): {done.contacts} value(s) changed "
        f"in {done.seconds:.1f} s"
    )


@scores_app.command("explain")
def explain_command(
    contact_id: Annotated[int, typer.Argument(help="The contact's id.")],
) -> None:
    """Why a contact has its scores: every rule, event and the points it counts now."""
    settings = load_settings()
    try:
        with create_db_engine(settings.database_url).connect() as conn:
            found = service.explain(conn, SystemClock(), contact_id)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    out = Console(highlight=False)
    for score in found.scores:
        out.print(f"{score.key} ({score.name}): {score.value:g}")
        for a in score.awards:
            what = f"{a.event_type} {a.event_path or ''}".strip() if a.event_id else "profile"
            when = a.awarded_at.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")
            out.print(f"  {a.points_now:+.2f} (awarded {a.points:+g})  {a.rule}  {what}  {when}")
