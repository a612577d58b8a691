"""`ekiden bench scoring` at a small size: it runs, checks its values against the hand-written
SQL and prints the figures."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from ekiden.cli import app


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_scoring_benchmark_runs_small(backend: str) -> None:
    if backend == "postgres":
        url = os.environ.get("EKIDEN_TEST_POSTGRES_URL")
        if not url:
            pytest.skip("EKIDEN_TEST_POSTGRES_URL is not set")
    else:
        url = "sqlite:///bench.db"
    result = CliRunner().invoke(
        app,
        ["bench", "scoring", "--contacts", "3000", "--events", "30000", "--repeat", "2",
         "--samples", "5", "--database-url", url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "contacts scored" in result.output
    assert "median" in result.output
    assert "incremental" in result.output
    assert "0 missed" in result.output
