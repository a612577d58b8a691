"""`ekiden bench ingest` at a small size: a real server, real HTTP, figures printed."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ekiden.bench.workload import generate_messages
from ekiden.cli import app


@pytest.mark.slow
def test_bench_ingest_prints_both_rates_and_their_ratio(tmp_path: object) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "ingest", "--events", "2000", "--batch-size", "100", "--repeat", "2"],
    )
    assert result.exit_code == 0, result.output
    output = result.output
    assert "ingest benchmark: sqlite, 2,000 events per run in batches of 100" in output
    runs = re.findall(
        r"^\s+(\d)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)%\s+([\d,]+)/([\d,]+) stored", output, re.M
    )
    assert [r[0] for r in runs] == ["1", "2"]
    for _, http, raw, ratio, stored, posted in runs:
        assert stored == posted == "2,000"  # every posted event was committed
        http_rate, raw_rate = float(http.replace(",", "")), float(raw.replace(",", ""))
        assert http_rate > 0
        assert raw_rate > 0
        assert abs(float(ratio) - 100 * http_rate / raw_rate) < 0.2
    median = re.search(r"^median\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)%$", output, re.M)
    assert median is not None


def test_bench_ingest_refuses_a_bad_size() -> None:
    result = CliRunner().invoke(app, ["bench", "ingest", "--events", "0"])
    assert result.exit_code != 0


def test_workload_mixes_pages_tracks_identifies_known_and_anonymous() -> None:
    messages = generate_messages(2000, seed=7)
    kinds = {m["type"] for m in messages}
    assert kinds == {"page", "track", "identify"}
    assert len({m["messageId"] for m in messages}) == 2000
    assert any("userId" in m for m in messages)
    assert any("userId" not in m for m in messages)
    assert any("utm_source=" in m["context"].get("page", {}).get("url", "") for m in messages)


def test_workload_repeats_name_new_people_each_time() -> None:
    def emails(run: str) -> set[str]:
        messages = generate_messages(2000, seed=7, run=run)
        return {m["traits"]["email"] for m in messages if m["type"] == "identify"}

    first, second = emails("r0-"), emails("r1-")
    assert first
    assert len(second) == len(first)
    assert not first & second
