"""`ekiden bench journeys` at a small size: worker processes run the 6-node journey to the
end on SQLite and PostgreSQL, the command prints rates, memory, the baseline and the decision
run, and refuses a database it cannot use."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ekiden.bench.journeys import run_journeys_bench
from ekiden.cli import app


@pytest.mark.slow
def test_journeys_benchmark_runs_small(bench_database_url: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench", "journeys", "--database-url", bench_database_url, "--contacts", "300",
            "--workers", "1", "--workers", "2", "--repeat", "1", "--batch", "100",
            "--decision-contacts", "400",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    medians = {
        int(m.group(1)): float(m.group(2).replace(",", ""))
        for m in re.finditer(r"^\s+(\d)\s+med\s+([\d,]+)", result.output, re.MULTILINE)
    }
    assert set(medians) == {1, 2}
    assert all(rate > 0 for rate in medians.values())
    assert "two workers / one worker:" in result.output
    assert re.search(r"median [\d,]+ rows/s", result.output)
    assert "one decision over 400 enrolled contacts (2 worker(s))" in result.output


@pytest.mark.slow
def test_every_enrolment_is_run_and_counted(bench_database_url: str) -> None:
    report = run_journeys_bench(bench_database_url, contacts=200, workers=[2], repeat=1, batch=64)
    (run,) = report.runs[2]
    # every contact: email, end of the wait, branch, stage change; the yes side a webhook
    assert 4 * 200 < run.node_executions <= 5 * 200
    assert sum(run.claimed) == 2 * 200  # two passes each: before and after the wait
    assert all(samples for samples in run.rss_mb)  # each worker's memory was sampled
    assert len(report.baseline) == 1
    assert report.baseline[0] > 0


def test_an_unusable_database_url_is_refused_clearly() -> None:
    result = CliRunner().invoke(
        app, ["bench", "journeys", "--database-url", "mysql://x@localhost/db"]
    )
    assert result.exit_code == 1
    assert "--database-url must be sqlite:///… or postgresql://…" in result.output
