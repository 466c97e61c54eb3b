"""``bench.rss_bench`` at toy size: every process of both modes is found and measured, by role,
and the report judges the largest peak against the goal."""

from __future__ import annotations

import pytest

from bench.rss_bench import LIMIT_MIB, Resident, render
from tests.support.benches import run_bench

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.own_database(
        reason="runs a benchmark command, which uses SQLite whatever --db says"
    ),
]


def test_every_process_of_both_modes_is_measured() -> None:
    done = run_bench("bench.rss_bench", "--size-mib", "1", "--requests", "5", timeout=400)

    assert done.returncode == 0, done.stderr[-3000:]
    table, verdict = done.stdout.split("\n\n")
    rows = [line.split() for line in table.splitlines()[1:]]
    roles = sorted(" ".join(row[1:-5]) for row in rows)
    assert roles == ["parent", "serve", "serve", "serve (all)", "worker", "worker (alone)"]
    for row in rows:
        start, after, peak, pss = map(float, row[-4:])
        assert 20 < start <= peak and after <= peak and 0 < pss <= after, row
    assert verdict.startswith("largest peak ")


def test_the_goal_is_the_largest_peak_under_150_mb() -> None:
    under = Resident("serve", "serve (all)", 1, start=100.0, after=120.0, peak=143.0, shared=90.0)
    over = Resident("workers", "worker", 2, start=100.0, after=120.0, peak=143.2, shared=90.0)

    assert pytest.approx(143.05, abs=0.01) == LIMIT_MIB
    assert "largest peak 143.0 MiB (goal < 143.1 MiB = 150 MB a process: met)" in render([under])
    assert "largest peak 143.2 MiB" in render([under, over])
    assert "NOT met" in render([under, over])
