"""The CPU report counts the processes a test starts, alive and reaped, not only pytest's own."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.support.cpu_report import tree_cpu_seconds

BURN = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\n"


def test_a_child_s_cpu_is_counted_while_it_runs_and_once_reaped() -> None:
    before = tree_cpu_seconds(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", BURN + "input()\n"], stdin=subprocess.PIPE)
    try:
        # Alive (it waits for input once it has burnt its 0.5 s): its own utime + stime.
        deadline = time.monotonic() + 30
        while tree_cpu_seconds(os.getpid()) - before < 0.4:
            assert time.monotonic() < deadline, "the live child's CPU was never counted"
            time.sleep(0.05)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    # Reaped: its time moved into pytest's cutime + cstime, still counted.
    assert tree_cpu_seconds(os.getpid()) - before >= 0.4
