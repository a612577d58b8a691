"""`ekiden bench segments` at a small size: it runs, compares equal sets and prints figures."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ekiden.cli import app


@pytest.mark.slow
def test_segments_benchmark_runs_small(bench_database_url: str) -> None:
    url = bench_database_url
    result = CliRunner().invoke(
        app,
        ["bench", "segments", "--contacts", "5000", "--events", "50000", "--repeat", "2",
         "--samples", "5", "--database-url", url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "members" in result.output
    assert "median" in result.output
    assert "freshness" in result.output
    assert "0 missed" in result.output
