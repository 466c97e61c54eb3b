"""Peak memory of a real process, read from the kernel: ``VmHWM`` of ``/proc/PID/status``.

``VmHWM`` belongs to the process's address space, which ``exec`` replaces, so it counts only
what the process itself touched. ``ru_maxrss`` from ``wait4`` or ``RUSAGE_CHILDREN`` would not
do: on ``exec`` Linux carries the parent's high-water mark over into the child's, so a child of
a large pytest process reports pytest's size.

``python -m tests.support.peak_memory ARGS`` runs ``gatekeeper ARGS`` in that process (the
same ``cli.main.main`` as ``python -m proxy``), then prints ``peak-rss-bytes N`` as its last
line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

MARK = "peak-rss-bytes"


def peak_rss(pid: int | str = "self") -> int:
    """Bytes: the largest resident set the process ``pid`` has had so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def reported(stderr: str) -> int:
    """The peak a run of this module printed."""
    last = stderr.strip().splitlines()[-1]
    name, value = last.split()
    assert name == MARK, stderr[-2000:]
    return int(value)


def main() -> int:
    from cli.main import main as gatekeeper

    try:
        return gatekeeper(sys.argv[1:])
    finally:
        print(f"{MARK} {peak_rss()}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
