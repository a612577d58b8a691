"""`ekiden bench email` at a small size: it runs the full pipeline and the smtplib reference
into a real SMTP server, checks every message arrived, and prints rates and the ratio."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ekiden.bench.email import run_email_bench
from ekiden.cli import app


@pytest.mark.slow
def test_email_benchmark_runs_small(bench_database_url: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "email",
            "--messages",
            "60",
            "--repeat",
            "1",
            "--database-url",
            bench_database_url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "DKIM-signed" in result.output
    assert "60/60" in result.output  # every message reached the server
    median = next(line for line in result.output.splitlines() if line.startswith("median"))
    pipeline, plain = (
        float(v.replace(",", "")) for v in re.findall(r"[\d,]+(?:\.\d+)?", median)[:2]
    )
    assert pipeline > 0
    assert plain > 0


@pytest.mark.slow
def test_every_message_is_delivered_once_and_measured(bench_database_url: str) -> None:
    report = run_email_bench(bench_database_url, messages=40, repeat=2)
    assert len(report.runs) == 2
    for run in report.runs:
        assert run.delivered == run.received == 40
        assert run.pipeline_seconds > 0
        assert run.smtplib_seconds > 0
        assert run.pipeline_cpu > 0
    assert report.ratio_median > 0
