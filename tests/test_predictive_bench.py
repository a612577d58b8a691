"""`ekiden bench training` at a small size: it runs the real pipeline and prints medians."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ekiden.cli import app


@pytest.mark.slow
def test_training_benchmark_runs_small(bench_database_url: str) -> None:
    url = bench_database_url
    result = CliRunner().invoke(
        app,
        ["bench", "training", "--contacts", "2000", "--events", "20000", "--repeat", "1",
         "--database-url", url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2,000 contacts" in result.output
    assert "open leads scored" in result.output
    median = next(line for line in result.output.splitlines() if line.startswith("median"))
    pipeline, cpu, features, bare = (float(x) for x in median.split()[1:5])
    assert pipeline > bare > 0
    assert cpu > 0
    assert features > 0
