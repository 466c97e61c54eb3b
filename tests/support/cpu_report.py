"""Where the suite's CPU goes: ``pytest --cpu-report=FILE`` writes, per test, its wall time and
the CPU seconds its process tree used (pytest and every process it started and still holds).

The suite has a wall-time budget (CI under 20 minutes on two cores) and spends most of it in
processes the tests start (registries, gatekeepers, CLI calls, clients), which pytest's
``--durations`` cannot see: a test that waits 10 s costs no CPU, one that starts three
gatekeepers costs seconds of it. Knowing which is which says whether a faster suite needs fewer
processes or more parallel ones.

CPU is read from ``/proc``: ``utime + stime`` of every live process below pytest, plus
``cutime + cstime`` (what they have reaped of their children). A module's fixtures are charged
to the test that first needs them. A process that leaves the tree (a daemon that double-forks,
PostgreSQL after ``pg_ctl`` exits) is not counted once it has left.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by ``root`` and its live descendants (and what they reaped)."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None:
            continue
        # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = sum(int(f) for f in fields[11:15])
    total = 0
    for pid, ticks in times.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            total += ticks
    return total / _TICKS


class CpuReport:
    """The plugin: one JSON line per test phase (setup, call, teardown) with its costs."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self._path.open("a", encoding="utf-8")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Iterator[None]:
        return (yield from self._measure(item, "setup"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        return (yield from self._measure(item, "call"))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Iterator[None]:
        return (yield from self._measure(item, "teardown"))

    def _measure(self, item: pytest.Item, phase: str) -> Iterator[None]:
        cpu, wall = tree_cpu_seconds(os.getpid()), time.monotonic()
        try:
            return (yield)
        finally:
            record = {
                "test": item.nodeid,
                "phase": phase,
                "wall": round(time.monotonic() - wall, 3),
                "cpu": round(tree_cpu_seconds(os.getpid()) - cpu, 3),
            }
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def pytest_unconfigure(self) -> None:
        self._file.close()
