"""``bench.procstat``'s per-process peak: the largest ``VmHWM`` of a server's tree, which the
150 MiB goal reads (a tree of several processes sums to more than any one of them holds)."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.procstat import peak_rss_mib, peak_rss_per_process_mib


def test_the_largest_process_of_a_tree_not_the_sum() -> None:
    # A child that touches 64 MiB more than this process, then waits to be read.
    grow = "b = bytearray(64 << 20); import sys; sys.stdout.write('ready\\n'); sys.stdout.flush()"
    child = subprocess.Popen(
        [sys.executable, "-c", f"{grow}; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        largest = peak_rss_per_process_mib(os.getpid())
        total = peak_rss_mib(os.getpid())
        alone = peak_rss_per_process_mib(child.pid)
        assert largest is not None and total is not None and alone is not None
        assert alone >= 64  # the child's own peak
        assert largest >= alone  # it is part of this process's tree
        assert largest < total  # the maximum over the tree, not the sum
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
