"""Resident memory of every gatekeeper process, after start and after work (issue 15).

``python -m bench.rss_bench`` starts a registry with one image pushed straight into it, then,
one mode at a time, a gatekeeper in front of it, started on a fresh database, stopped, and
started again (the usual start: the schema is current):

- **serve**: ``gatekeeper serve`` in one process (serving and verifying in it);
- **workers**: ``gatekeeper serve --workers 2``: the supervising parent, two serving
  processes and one verification worker (``gatekeeper worker``'s code, forked by the parent);
- **worker**: ``gatekeeper worker`` started on its own beside the ``workers`` gatekeeper's
  database (how other machines run workers), idle: its floor.

For every process it reads ``VmRSS`` once the gatekeeper answers, then runs some work through
it (the first pull of the image, verified under ``config-sanity`` and ``inventory``, which
reads the layer; ``--requests`` manifest GETs; two pulls and one push of the layer) and reads
``VmRSS``, ``VmHWM`` (the peak of the whole run) and ``Pss`` again. The goal is absolute, not
a ratio: every process's peak under 150 MB (143.1 MiB; ``bench/goals.py`` reads the same
figure as 150 MiB for ``proxy_bench``'s trees).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import registry_api
from bench.first_pull import first_manifest_get
from bench.image import MANIFEST_MEDIA_TYPE
from bench.procstat import _status_kib, _tree
from bench.seeding import REPO, TAG, Progress, Seeded, seed_registry
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.procs import wait_http

LIMIT_MIB = 150e6 / 2**20
"""Issue 15's "RSS per process < 150 MB", in MiB."""
POLICY = {"name": "bench", "repositories": ["bench/*"], "require": ["config-sanity", "inventory"]}
"""Verification that opens the layer (``inventory``), so the worker's scan is in the peak."""
_STARTED = re.compile(r"started (\w+) process (\d+)")


@dataclass
class Resident:
    """One process's resident set, in MiB."""

    mode: str
    role: str
    pid: int
    start: float | None = None
    after: float | None = None
    peak: float | None = None
    shared: float | None = None
    """``Pss`` after the work: resident pages divided among the processes sharing them (a
    forked child shares its parent's imports), so the modes' sums compare as real memory."""


def roles(gatekeeper: Gatekeeper, pid: int) -> dict[int, str]:
    """Each live process of the tree under ``pid`` by role, from the supervisor's log lines."""
    named = {int(p): role for role, p in _STARTED.findall(gatekeeper.log_path.read_text())}
    only = "serve (all)" if not named else "parent"
    return {member: named.get(member, only if member == pid else "?") for member in _tree(pid)}


def _mib(pid: int, field: str) -> float | None:
    kib = _status_kib(pid, field)
    return None if kib is None else kib / 1024


def _pss_mib(pid: int) -> float | None:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    kib = next((int(line.split()[1]) for line in lines if line.startswith("Pss:")), None)
    return None if kib is None else kib / 1024


def work(client: httpx.Client, url: str, seeded: Seeded, requests: int) -> None:
    """The first pull (verification), manifest GETs, two layer pulls and one layer push."""
    first_manifest_get(client, f"{url}/v2/{REPO}/manifests/{TAG}", seeded.image)
    for _ in range(requests):
        response = client.get(
            f"{url}/v2/{REPO}/manifests/{TAG}", headers={"Accept": MANIFEST_MEDIA_TYPE}
        )
        response.raise_for_status()
    blob = seeded.layer.blob
    for _ in range(2):
        with client.stream("GET", f"{url}/v2/{REPO}/blobs/{blob.digest}") as response:
            response.raise_for_status()
            for _chunk in response.iter_bytes(1 << 20):
                pass
    registry_api.push_blob_file(client, url, "bench/pushed", blob)


def measure_mode(
    mode: str, seeded: Seeded, workdir: Path, requests: int, progress: Progress
) -> list[Resident]:
    env = {
        "GATEKEEPER_POLICIES": json.dumps([POLICY]),
        "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}, "inventory": {}}),
        "GATEKEEPER_WORKERS": "2" if mode == "workers" else "1",
    }
    gatekeeper = make_gatekeeper(workdir / mode, seeded.registry.url, extra_env=env)
    extra: subprocess.Popen[bytes] | None = None
    try:
        # Measured after a restart: the first start on an empty database also runs the
        # migrations (Alembic: about 11 MiB more in the process that runs them); every later
        # start finds the schema current, which is the usual case.
        gatekeeper.stop()
        gatekeeper.start()
        assert gatekeeper.process is not None
        time.sleep(2)  # the forked children finish their start-up after the port answers
        found = roles(gatekeeper, gatekeeper.process.pid)
        if mode == "workers":
            log = (workdir / "worker.log").open("ab")
            extra = subprocess.Popen(
                [sys.executable, "-m", "proxy", "worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=gatekeeper.env,
            )
            log.close()
            _wait_for(workdir / "worker.log", "verification worker ready")
            found[extra.pid] = "worker (alone)"
        rows = [Resident(mode, role, pid, start=_mib(pid, "VmRSS")) for pid, role in found.items()]
        progress.say(f"{mode}: {len(rows)} processes started; working")
        with httpx.Client(timeout=600) as client:
            work(client, gatekeeper.url, seeded, requests)
        time.sleep(1)
        for row in rows:
            row.after, row.peak = _mib(row.pid, "VmRSS"), _mib(row.pid, "VmHWM")
            row.shared = _pss_mib(row.pid)
        return rows
    finally:
        if extra is not None:
            extra.terminate()
            extra.wait(20)
        gatekeeper.stop()


def _wait_for(log: Path, line: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in log.read_text():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {line!r} in {log}:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


def render(rows: Sequence[Resident]) -> str:
    def cell(value: float | None) -> str:
        return f"{value:8.1f}" if value is not None else "       -"

    lines = [
        f"{'mode':<9}{'role':<16}{'pid':>8}{'start':>9}{'after':>9}{'peak':>9}{'Pss':>9}   MiB"
    ]
    for row in rows:
        lines.append(
            f"{row.mode:<9}{row.role:<16}{row.pid:8d} {cell(row.start)} {cell(row.after)} "
            f"{cell(row.peak)} {cell(row.shared)}"
        )
    worst = max((row.peak or 0.0 for row in rows), default=0.0)
    verdict = "met" if worst < LIMIT_MIB else "NOT met"
    lines.append(
        f"\nlargest peak {worst:.1f} MiB (goal < {LIMIT_MIB:.1f} MiB = 150 MB a process: {verdict})"
    )
    return "\n".join(lines)


def main(size_mib: int, requests: int, modes: Sequence[str]) -> int:
    progress = Progress()
    rows: list[Resident] = []
    with ExitStack() as stack, httpx.Client(timeout=600) as client:
        seeded = seed_registry(stack, client, size_mib << 20, keep=False, progress=progress)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gk-rss-")))
        wait_http(f"{seeded.registry.url}/v2/", timeout=30, ok=(200,))
        for mode in modes:
            rows += measure_mode(mode, seeded, workdir, requests, progress)
    print(render(rows))
    return 0


if __name__ == "__main__":
    from bench.cli import rss_bench

    sys.exit(rss_bench())
