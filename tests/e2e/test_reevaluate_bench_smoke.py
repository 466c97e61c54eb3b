"""The re-evaluation benchmark still runs end to end at a tiny size (its figures are not judged
here, only that it seeds, imports, re-evaluates every image and reports the ratio to the goal)."""

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


def test_reevaluate_bench_tiny_runs(tmp_path: Path) -> None:
    out = run_bench(
        "bench.reevaluate_bench",
        "--images",
        "40",
        "--min-packages",
        "10",
        "--max-packages",
        "30",
        "--advisories",
        "6",
        "--no-go-db",
        "--results-dir",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (result,) = tmp_path.glob("reevaluate-*.json")
    data = json.loads(result.read_text())
    # glibc is in every image and one advisory names it: every image is re-evaluated
    assert data["images"] == 40 and data["reevaluated"] == 40
    assert data["quarantined"] == 40 and data["needs_verification"] == 0
    assert data["policy_change_reevaluated"] == 40
    assert "ratio to the 10s goal" in out.stdout
