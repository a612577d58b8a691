"""`ekiden bench reports` at a small size: it builds the population with its stage history,
times every report against the baseline and prints the figures."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ekiden.cli import app


@pytest.mark.slow
def test_reports_benchmark_runs_small(bench_database_url: str) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "reports", "--contacts", "2000", "--events", "20000", "--repeat", "2",
         "--database-url", bench_database_url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.search(r"baseline: count\(\*\) of the period's [\d,]+ events: median \d+\.\d{3} s",
                     result.output)  # fmt: skip
    for report in ("funnel", "intent", "prospects", "campaigns", "journey", "funnel (filtered)"):
        row = next(line for line in lines if line.startswith(f"{report}  "))
        median, *_ = re.findall(r"\d+\.\d{3}", row)
        assert float(median) > 0
        found = re.search(r"(\d+)\s+(NOT )?met$", row)
        assert found is not None, row
        assert int(found.group(1)) > 0  # every report found something in the generated population
