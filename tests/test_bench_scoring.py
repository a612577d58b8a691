"""`ekiden bench scoring` at a small size: it runs, checks its values against the hand-written
SQL and prints the figures."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ekiden.cli import app


@pytest.mark.slow
def test_scoring_benchmark_runs_small(bench_database_url: str) -> None:
    url = bench_database_url
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
