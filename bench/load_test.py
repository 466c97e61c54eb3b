"""Load test: a CI fleet's pulls and pushes through one gatekeeper, next to the registry direct.

``python -m bench.load_test`` (60 s, 200 pullers, 20 pushers per target) or ``--quick`` (5 s,
20 and 4). One run:

1. starts a registry on fresh storage and seeds ``--images`` small images straight into it;
2. starts one gatekeeper in front of it (SQLite, or PostgreSQL with ``--database postgres``),
   with the benchmark's enforcing policy and the registry's storage mounted (``--storage
   mounted``, the recommended deployment; ``streamed`` sends every pull to the registry),
   and pulls each image once through it so the first verification is not inside the timed
   run;
3. sends the same load (``bench.traffic``) to the registry direct, then to the gatekeeper, for
   ``--duration`` seconds each, from ``--processes`` generator processes;
4. checks the gatekeeper's access log holds exactly one matching row per request
   (``bench.logcheck``), and prints p50/p99/throughput per request class with ratios.

The exit status is 1 if any request failed on either target or the access log does not match:
those are correctness failures, unlike the figures, which are reported but never judged.
Everything listens on 127.0.0.1 and lives under a temporary directory removed at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx

from bench import procstat
from bench.errors import BenchError
from bench.loadstats import RunStats, render, summarize
from bench.logcheck import LogCheck, check_log
from bench.seeding import Progress
from bench.targets import GATEKEEPER_ENV
from bench.traffic import (
    OCI_MANIFEST,
    PullImage,
    Sent,
    Share,
    image_config,
    image_manifest,
    run_share,
    tar_layer,
)
from config.settings import AuditSettings
from tests.support import postgres
from tests.support.database import QueryError
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import push_blob
from tests.support.registry import make_registry
from tests.support.zygote import Forked

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROWS_DEADLINE_SECONDS = 60.0
"""How long the access log may take to catch up after the run (writes are batched)."""
SETTLE_SECONDS = 1.0
"""After every expected row arrived, wait this long for unexpected extra ones."""
FIRST_PULL_DEADLINE_SECONDS = 120.0

RowSource = Callable[[int], list[dict[str, Any]]]
"""Access-log request rows (not verdict events) with an id above the argument, oldest first."""

_DEFAULT_FLUSH_SECONDS = AuditSettings.model_fields["flush_interval_seconds"].default
"""The gatekeeper's own default access-log flush interval (``audit.flush_interval_seconds``)."""


@dataclass(frozen=True)
class Options:
    duration: float
    pullers: int
    pushers: int
    processes: int
    images: int
    blob_kib: int
    push_kib: int
    max_requests: int
    database: str
    workers: int
    """The gatekeeper's serving processes (``serve --workers``)."""
    storage: str
    """``mounted``: the gatekeeper reads the registry's storage (``upstream_storage_root``, as
    docs/deployment.md recommends): manifests from its files, blobs by sendfile. ``streamed``:
    without it, so every pull is a registry round trip."""
    keep_workdir: bool
    results_dir: Path | None


@dataclass(frozen=True)
class Outcome:
    """What a run found: figures per target and the access-log check (None if not reached)."""

    runs: dict[str, RunStats]
    log: LogCheck | None

    @property
    def ok(self) -> bool:
        return all(r.errors == 0 for r in self.runs.values()) and bool(self.log and self.log.ok)


def main(options: Options) -> int:
    try:
        outcome = run(options, Progress())
    except (BenchError, RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        # A server that did not start (its log tail is in the message) or a failed seeding.
        print(f"load test failed: {exc}", file=sys.stderr)
        return 1
    print(render(outcome.runs, baseline="direct"))
    print(outcome.log.describe() if outcome.log else "access log not checked")
    if options.results_dir is not None:
        print(f"results: {_write(options, outcome)}", file=sys.stderr)
    return 0 if outcome.ok else 1


def run(options: Options, progress: Progress) -> Outcome:
    """Set everything up, run the load on both targets and check the access log."""
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="gatekeeper-load-"))
        if options.keep_workdir:
            progress.say(f"keeping {workdir} (servers' logs and storage)")
        else:
            stack.callback(_remove, workdir)
        registry = make_registry(workdir / "registry")
        stack.callback(registry.stop)
        images = seed(registry.url, options.images, options.blob_kib << 10)
        # Every simulated client connects from 127.0.0.1: one address stands for hundreds.
        env = {
            **GATEKEEPER_ENV,
            "GATEKEEPER_CONNECTIONS__MAX_PER_ADDRESS": "100000",
            "GATEKEEPER_WORKERS": str(options.workers),
            # The access log flushed as a deployment flushes it, not every 0.05 s as the
            # test harness does so its tests see rows at once: each flush is a write
            # transaction, twenty a second per process, in the turn the uploads wait for.
            "GATEKEEPER_AUDIT__FLUSH_INTERVAL_SECONDS": str(_DEFAULT_FLUSH_SECONDS),
        }
        if options.database == "postgres":
            env["GATEKEEPER_DATABASE_URL"] = postgres.cluster_url(stack, workdir / "pg")
        gatekeeper = make_gatekeeper(
            workdir / "gatekeeper",
            registry.url,
            storage_root=registry.storage_root if options.storage == "mounted" else None,
            extra_env=env,
        )
        stack.callback(gatekeeper.stop)
        rows = access_rows(gatekeeper)
        progress.say(f"seeded {len(images)} images; first pulls through {gatekeeper.url}")
        first_pulls(gatekeeper.url, images)
        runs: dict[str, RunStats] = {}
        progress.say(f"direct: {_describe(options)}")
        runs["direct"], _ = drive(
            registry.url, images, options, "bench/push-direct", _pid(registry.process)
        )
        progress.say(f"gatekeeper: {_describe(options)}")
        before = quiet_mark(rows)
        runs["gatekeeper"], sent = drive(
            gatekeeper.url, images, options, "bench/push-gk", _pid(gatekeeper.process)
        )
        progress.say("checking the access log")
        log = check_log(sent, wait_rows(rows, before, sum(1 for s in sent if s.status)))
        return Outcome(runs=runs, log=log)


def seed(registry_url: str, count: int, layer_bytes: int) -> tuple[PullImage, ...]:
    """Push ``count`` single-layer images straight into the registry (not through a target)."""
    images = []
    with httpx.Client(base_url=registry_url, timeout=60) as client:
        for number in range(count):
            repository = f"bench/pull-{number}"
            layer = tar_layer(layer_bytes)
            config = image_config(layer)
            push_blob(client, repository, config)
            layer_digest = push_blob(client, repository, layer)
            manifest = image_manifest(config, layer)
            response = client.put(
                f"/v2/{repository}/manifests/latest",
                content=manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )
            if response.status_code != 201:
                raise BenchError(f"seeding {repository}: {response.status_code} {response.text}")
            images.append(PullImage(repository, "latest", manifest, layer_digest, len(layer)))
    return tuple(images)


def first_pulls(base_url: str, images: Sequence[PullImage]) -> None:
    """Pull each manifest until the gate has a verdict and serves it (or say why it does not)."""
    deadline = time.monotonic() + FIRST_PULL_DEADLINE_SECONDS
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for image in images:
            while True:
                response = client.get(
                    f"/v2/{image.repository}/manifests/{image.tag}",
                    headers={"Accept": OCI_MANIFEST},
                )
                if response.status_code == 200:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"first pull of {image.repository}: {response.status_code} "
                        f"{response.text[:300]}"
                    )
                time.sleep(0.2)


def drive(
    base_url: str,
    images: tuple[PullImage, ...],
    options: Options,
    push_prefix: str,
    server_pid: int | None = None,
) -> tuple[RunStats, list[Sent]]:
    """Run the load against ``base_url`` from ``options.processes`` processes; all records.

    The run's time is from the first client's start to the last one's end, as the generator
    processes saw it, so starting the processes is not counted. ``server_pid``'s CPU time
    during the run is recorded: for the gatekeeper it is the proxy's own cost (the registry
    behind it not counted), the figure least disturbed by other work on the machine."""
    shares = split(base_url, images, options, push_prefix)
    server_before = procstat.cpu_seconds(server_pid) if server_pid else None
    with ProcessPoolExecutor(len(shares), mp_context=get_context("spawn")) as pool:
        results = list(pool.map(run_share, shares))
    server_after = procstat.cpu_seconds(server_pid) if server_pid else None
    seconds = max(r.ended for r in results) - min(r.started for r in results)
    sent = [item for result in results for item in result.sent]
    server = (
        server_after - server_before
        if server_before is not None and server_after is not None
        else None
    )
    return (
        summarize(
            sent,
            seconds,
            generator_cpu_seconds=sum(r.cpu_seconds for r in results),
            server_cpu_seconds=server,
        ),
        sent,
    )


def split(
    base_url: str, images: tuple[PullImage, ...], options: Options, push_prefix: str
) -> list[Share]:
    """Deal the clients and the request cap out over the generator processes evenly."""
    count = options.processes
    return [
        Share(
            base_url=base_url,
            images=images,
            pullers=_part(options.pullers, count, n),
            pushers=_part(options.pushers, count, n),
            duration=options.duration,
            max_requests=_part(options.max_requests, count, n),
            push_bytes=options.push_kib << 10,
            push_prefix=f"{push_prefix}-p{n}",
        )
        for n in range(count)
    ]


def _part(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def wait_rows(rows: RowSource, after: int, expected: int) -> list[dict[str, Any]]:
    """Rows after id ``after`` once at least ``expected`` arrived (or the deadline passed)."""
    deadline = time.monotonic() + ROWS_DEADLINE_SECONDS
    while len(rows(after)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(SETTLE_SECONDS)
    return rows(after)


def quiet_mark(rows: RowSource) -> int:
    """The last row's id once the log has stopped growing: rows of earlier requests (first
    pulls, seeding) can still be in the writer's batch when those requests have returned."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < SETTLE_SECONDS:
        latest = rows(max(last, 0))
        if latest:
            last, since = int(latest[-1]["id"]), time.monotonic()
        elif last < 0:
            last = 0
        time.sleep(0.1)
    return max(last, 0)


def access_rows(gatekeeper: Gatekeeper) -> RowSource:
    """Read request rows straight from the gatekeeper's database (SQLite or PostgreSQL)."""

    def read(after: int) -> list[dict[str, Any]]:
        try:
            return gatekeeper.audit_rows("id > :after AND method != 'EVENT'", {"after": after})
        except QueryError:  # no table yet: nothing logged so far
            return []

    return read


def _pid(process: subprocess.Popen[bytes] | Forked | None) -> int | None:
    return process.pid if process is not None else None


def _describe(options: Options) -> str:
    return (
        f"{options.pullers} pullers + {options.pushers} pushers for {options.duration:.0f}s "
        f"from {options.processes} process(es), registry storage {options.storage}"
    )


def _write(options: Options, outcome: Outcome) -> Path:
    assert options.results_dir is not None
    options.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = options.results_dir / f"load-test-{stamp}.json"
    document = {
        "options": {**asdict(replace(options, results_dir=None))},
        "runs": {name: asdict(run) for name, run in outcome.runs.items()},
        "log": asdict(outcome.log) if outcome.log else None,
        "ok": outcome.ok,
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    return path


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    from bench.cli import load_test

    sys.exit(load_test())
