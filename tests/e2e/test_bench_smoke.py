"""The benchmark harness still runs end to end (its figures are not judged here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.benches import run_bench

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.own_database(
        reason="runs a benchmark command, which uses SQLite whatever --db says"
    ),
]


def test_proxy_bench_quick_runs(tmp_path: Path) -> None:
    out = run_bench(
        "bench.proxy_bench",
        "--quick",
        "--size-mib",
        "8",
        "--repeats",
        "1",
        "--requests",
        "50",
        "--results-dir",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (result,) = tmp_path.glob("*.json")
    data = json.loads(result.read_text())
    assert data, "the bench wrote an empty result"
    assert "gatekeeper-sendfile" in out.stdout and "nginx" in out.stdout


def test_first_pulls_bench_runs() -> None:
    """Two first pulls each way, and the worker path in the same build."""
    out = run_bench(
        "bench.first_pulls",
        "--count",
        "2",
        "--gatekeeper-env",
        "GATEKEEPER_VERIFICATION__INLINE_FIRST_PULLS=false",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "first pull / direct (medians):" in out.stdout
