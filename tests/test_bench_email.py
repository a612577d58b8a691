"""`ekiden bench email` at a small size: it runs the full pipeline and the smtplib reference
into a real SMTP server, checks every message arrived, and prints rates and the ratio."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ekiden.cli import app


@pytest.mark.slow
def test_email_benchmark_runs_small() -> None:
    result = CliRunner().invoke(app, ["bench", "email", "--messages", "60", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    assert "DKIM-signed" in result.output
    assert "60/60" in result.output  # every message reached the server
    median = next(line for line in result.output.splitlines() if line.startswith("median"))
    pipeline, plain = (
        float(v.replace(",", "")) for v in re.findall(r"[\d,]+(?:\.\d+)?", median)[:2]
    )
    assert pipeline > 0
    assert plain > 0
