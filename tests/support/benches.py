"""Run the benchmark scripts (``python -m bench.<name>``) as a user would, for the smoke tests
that check each harness still runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: the benchmarks are run from there, as ``python -m bench.<name>``."""


def run_bench(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m <module> <args>`` from the repository root, capturing its text output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
