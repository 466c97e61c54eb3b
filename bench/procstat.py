"""Peak resident memory and CPU time of a server process tree, read from ``/proc``.

``VmHWM`` is the kernel's high-water mark of a process's resident set, so one read after the
measurements shows the worst moment of the whole run, including mid-transfer peaks a sampler
would miss; ``VmRSS`` right after start-up is the floor to compare it with. Children are
included because a server may fork workers (nginx always does).
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def peak_rss_mib(pid: int) -> float | None:
    """Sum of ``VmHWM`` over ``pid`` and its descendants, in MiB; None if ``pid`` is gone."""
    return _tree_mib(pid, "VmHWM")


def peak_rss_per_process_mib(pid: int) -> float | None:
    """The largest ``VmHWM`` of ``pid`` and its descendants, in MiB: the per-process figure
    for a server of several processes (``gatekeeper serve --workers N``), whose sum grows with
    N while what matters for a streamed body is that no one process holds it."""
    peaks = [kib for kib in (_status_kib(m, "VmHWM") for m in _tree(pid)) if kib is not None]
    return max(peaks) / 1024 if peaks else None


def current_rss_mib(pid: int) -> float | None:
    """Sum of ``VmRSS`` (resident now) over ``pid`` and its descendants, in MiB."""
    return _tree_mib(pid, "VmRSS")


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of ``pid`` and its live descendants so far, in seconds.

    Read before and after a measurement, the difference is what serving it cost the server;
    on a noisy machine that is steadier than throughput, which also counts time spent waiting
    for a core.
    """
    total_ticks = 0
    found = False
    for member in _tree(pid):
        try:
            fields = (_PROC / str(member) / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total_ticks += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
        found = True
    return total_ticks / os.sysconf("SC_CLK_TCK") if found else None


def _tree_mib(pid: int, field: str) -> float | None:
    total_kib = 0
    found = False
    for member in _tree(pid):
        kib = _status_kib(member, field)
        if kib is not None:
            total_kib += kib
            found = True
    return total_kib / 1024 if found else None


def _tree(pid: int) -> list[int]:
    seen: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.append(current)
        pending.extend(_children(current))
    return seen


def _children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return children
    for task in tasks:
        try:
            children.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return children


def _status_kib(pid: int, field: str) -> int | None:
    try:
        lines = (_PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None
