"""``ekiden segments …``: list, create, preview and refresh segments from the shell."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from ekiden.clock import SystemClock
from ekiden.config import load_settings
from ekiden.db import create_db_engine
from ekiden.errors import EkidenError
from ekiden.segments import service
from ekiden.segments.models import SegmentIn

segments_app = typer.Typer(no_args_is_help=True, help="Dynamic segments.")
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


def _read_filter(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _fail(f"cannot read the filter from {path}: {exc}") from None


@segments_app.command("list")
def list_command() -> None:
    """List segments with their member counts."""
    settings = load_settings()
    with create_db_engine(settings.database_url).connect() as conn:
        found = service.list_segments(conn)
    table = Table("slug", "name", "members", "version", "built", "refreshed")
    for s in found:
        when = s.refreshed_at.astimezone(settings.zone).isoformat() if s.refreshed_at else "-"
        table.add_row(s.slug, s.name, str(s.member_count), str(s.version), str(s.built), when)
    Console().print(table)


@segments_app.command("create")
def create_command(
    slug: Annotated[str, typer.Argument(help="Identifier, e.g. hot-prospects.")],
    filter_file: Annotated[Path, typer.Argument(help="The filter as a YAML or JSON file.")],
    name: Annotated[str, typer.Option(help="Display name (defaults to the slug).")] = "",
) -> None:
    """Create a segment from a filter file and build its membership."""
    settings = load_settings()
    raw = _read_filter(filter_file)
    if not isinstance(raw, dict):
        raise _fail("the filter file must hold one filter object")
    clock = SystemClock()
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            service.create_segment(
                conn, clock, SegmentIn(slug=slug, name=name or slug, filter=raw), settings.zone
            )
            done = service.rebuild_segment(conn, clock, slug, settings.zone)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    err.print(f"created segment {slug} with {done.entered} members")


@segments_app.command("preview")
def preview_command(
    filter_file: Annotated[Path, typer.Argument(help="The filter as a YAML or JSON file.")],
) -> None:
    """Print how many contacts a filter selects now, without saving anything."""
    settings = load_settings()
    raw = _read_filter(filter_file)
    try:
        with create_db_engine(settings.database_url).connect() as conn:
            count, _ = service.preview(conn, SystemClock(), raw, settings.zone)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    sys.stdout.write(f"{count}\n")


@segments_app.command("refresh")
def refresh_command(
    slug: Annotated[str | None, typer.Argument(help="One segment to rebuild.")] = None,
    all_segments: Annotated[bool, typer.Option("--all", help="Rebuild every segment.")] = False,
) -> None:
    """Rebuild segments: one, every changed one (default) or all of them (--all)."""
    settings = load_settings()
    clock = SystemClock()
    try:
        with create_db_engine(settings.database_url).begin() as conn:
            if slug:
                done = service.rebuild_segment(conn, clock, slug, settings.zone)
            else:
                done = service.rebuild_due(conn, clock, settings.zone, all_segments=all_segments)
    except EkidenError as exc:
        raise _fail(exc.message) from None
    err.print(f"rebuilt {done.segments} segment(s): +{done.entered} / -{done.exited} members")
