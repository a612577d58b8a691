"""The reference docs are generated from the code; these tests fail when they drift."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from ekiden.cli import app
from ekiden.config import Settings
from ekiden.docsgen import generated

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted(generated(), key=str), ids=lambda p: p.name)
def test_generated_reference_is_up_to_date(path: Path) -> None:
    assert path.read_text(encoding="utf-8") == generated()[path], (
        f"{path.name} is out of date: run `python -m ekiden.docsgen`"
    )


def test_every_setting_is_described() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []


def test_every_command_has_help() -> None:
    def walk(command: object, path: str) -> list[str]:
        ctx = command.context_class(command, info_name=path)  # type: ignore[attr-defined]
        if hasattr(command, "list_commands"):
            found = []
            for name in command.list_commands(ctx):
                found += walk(command.get_command(ctx, name), f"{path} {name}")
            return found
        return [] if (command.help or "").strip() else [path]  # type: ignore[attr-defined]

    assert walk(typer.main.get_command(app), "ekiden") == []


def test_readme_names_the_test_command_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test" in readme
    assert "scripts/test" in ci
    assert "scripts/demo" in readme
