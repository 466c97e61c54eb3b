"""The console benchmark still runs end to end at a tiny size: it seeds, signs in through the
form, gets every kind of page with rows on it, and reports each page's p95 (the 200 ms goal is
judged by the full-size run, not here)."""

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


def test_console_bench_tiny_runs(tmp_path: Path) -> None:
    out = run_bench(
        "bench.console_bench",
        "--verdicts",
        "300",
        "--log-rows",
        "3000",
        "--repeat",
        "2",
        "--results-dir",
        str(tmp_path),
    )
    assert out.returncode in (0, 1), out.stderr[-3000:]
    (result,) = tmp_path.glob("console-sqlite-*.json")
    data = json.loads(result.read_text())
    pages = data["pages"]
    assert {"queue: quarantined, newest first", "log: identity + action + decision"} <= set(pages)
    assert any(name.endswith(", page 2") for name in pages)  # a keyset link was followed
    assert (
        pages["log: newest"]["rows_shown"] == 100 and pages["queue: any state"]["rows_shown"] == 50
    )
    assert all(p["server_p95_ms"] > 0 for p in pages.values())
    assert "goal" in out.stdout
