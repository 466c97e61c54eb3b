"""``python -m bench.proxy_bench``: the gatekeeper's cost, as ratios against direct and nginx.

One run starts a registry on fresh storage, seeds it with a random layer (1 GiB by default) and a
small image referencing it, puts nginx and both gatekeeper modes in front of it, then measures
blob pull, blob push and manifest GETs on every target. Each measurement is repeated and the
median kept, and repetitions go round-robin over the targets (rotating who goes first), so a
noisy minute on the shared machine smears over all targets instead of landing on one.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx

from bench import curl, environment, registry_api
from bench.errors import BenchError, MeasurementError, TargetUnavailable
from bench.first_pull import first_manifest_get
from bench.goals import PROXY_GOALS
from bench.image import MANIFEST_MEDIA_TYPE
from bench.load import LoadSpec, run_load
from bench.procstat import (
    cpu_seconds,
    current_rss_mib,
    peak_rss_mib,
    peak_rss_per_process_mib,
)
from bench.report import render, write_json
from bench.results import (
    DIGEST_P99,
    DIGEST_RPS,
    FIRST_GET,
    MANIFEST_CPU,
    MANIFEST_P50,
    MANIFEST_P99,
    MANIFEST_RPS,
    PEAK_RSS,
    PEAK_RSS_PROCESS,
    PULL,
    PULL_CPU,
    PUSH,
    PUSH_CPU,
    START_RSS,
    Metric,
    TargetRecord,
)
from bench.seeding import REPO, TAG, Progress, Seeded, seed_registry
from bench.targets import GATEKEEPER_ENV, Target, TargetSetup, start_target
from tests.support.tlscert import self_signed

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PHASES = ("pull", "push", "manifests")
Measure = Callable[[Target], dict[Metric, float]]


@dataclass(frozen=True)
class Phase:
    """One kind of measurement, run over every target before the next kind starts."""

    name: str
    """What ``--phases`` calls it."""
    metrics: tuple[Metric, ...]
    """What ``measure`` returns; a failure marks all of them failed for the target."""
    measure: Measure
    """One timed repetition against one target."""
    warm_up: bool
    """Run once per target untimed first, so no first timed run pays for a cold page cache or a
    target's first-request set-up (manifest load warms up inside each run instead)."""


@dataclass(frozen=True)
class BenchSettings:
    """One run's parameters, recorded verbatim in the JSON results."""

    size_mib: int
    """Size of the pulled layer and of every pushed blob."""
    repeats: int
    """Repetitions of each measurement per target; the median is reported."""
    requests: int
    """Timed manifest GETs per repetition."""
    concurrency: int
    """Manifest GETs in flight at once."""
    warmup: int
    """Untimed manifest GETs before each timed batch."""
    targets: tuple[str, ...]
    gatekeeper_env: dict[str, str]
    """Extra ``GATEKEEPER_*`` environment from ``--gatekeeper-env``, over the bench's policy."""
    phases: tuple[str, ...]
    """Which of ``pull``, ``push``, ``manifests`` to run (peak RSS is always read)."""
    results_dir: Path
    keep_workdir: bool


def main(settings: BenchSettings) -> int:
    progress = Progress()
    try:
        records = _run(settings, progress)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(_header(settings))
    print(render(records, PROXY_GOALS))
    context = {**asdict(settings), "results_dir": str(settings.results_dir)}
    context["gatekeeper_env"] = _redacted(settings.gatekeeper_env)
    context |= {"environment": environment.describe(), "seconds": round(progress.elapsed(), 1)}
    path = write_json(settings.results_dir, "proxy-bench", context, records, PROXY_GOALS)
    print(f"\nresults: {path}  ({progress.elapsed():.0f}s)")
    return 0


def _run(settings: BenchSettings, progress: Progress) -> list[TargetRecord]:
    with ExitStack() as stack:
        # The TLS targets' certificate, made for the run; the client trusts it (and only
        # https targets use it).
        tls = self_signed(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tls-"))))
        trust = ssl.create_default_context(cafile=str(tls[0]))
        client = stack.enter_context(httpx.Client(timeout=120, trust_env=False, verify=trust))
        seeded = seed_registry(
            stack, client, settings.size_mib << 20, keep=settings.keep_workdir, progress=progress
        )
        records, targets = _start_targets(settings, stack, seeded, tls, progress)
        _record_rss(targets, records, START_RSS, current_rss_mib)
        _first_gets(client, seeded, targets, records, progress)
        for phase in _phases(settings, client, seeded):
            if phase.name in settings.phases:
                _run_phase(phase, targets, records, settings.repeats, progress)
        _record_rss(targets, records, PEAK_RSS, peak_rss_mib)
        _record_rss(targets, records, PEAK_RSS_PROCESS, peak_rss_per_process_mib)
        return [records[name] for name in settings.targets]


class _ServerCpu:
    """CPU time a target's own processes spend inside a ``with`` block.

    Only the target's tree: for nginx and the gatekeeper the registry behind them is not
    counted, so the figure is what the proxy itself costs.
    """

    def __init__(self, target: Target) -> None:
        self._pid = target.pid
        self._before: float | None = None
        self.seconds: float | None = None

    def __enter__(self) -> _ServerCpu:
        self._before = cpu_seconds(self._pid) if self._pid else None
        return self

    def __exit__(self, *exc_info: object) -> None:
        after = cpu_seconds(self._pid) if self._pid else None
        if self._before is not None and after is not None:
            self.seconds = after - self._before

    def per(self, metric: Metric, units: float) -> dict[Metric, float]:
        """``{metric: seconds / units}``, or nothing when the CPU time could not be read."""
        return {} if self.seconds is None or units <= 0 else {metric: self.seconds / units}


def _first_gets(
    client: httpx.Client,
    seeded: Seeded,
    targets: list[Target],
    records: dict[str, TargetRecord],
    progress: Progress,
) -> None:
    for target in targets:
        url = f"{target.url}/v2/{REPO}/manifests/{TAG}"
        try:
            seconds = first_manifest_get(client, url, seeded.image)
        except MeasurementError as exc:
            reason = _with_death(str(exc), target)
            records[target.name].fail(FIRST_GET, reason)
            progress.say(f"first manifest GET on {target.name} FAILED: {reason}")
            continue
        records[target.name].add(FIRST_GET, seconds * 1000)
        progress.say(f"first manifest GET on {target.name}: {seconds * 1000:.1f} ms")


def _record_rss(
    targets: list[Target],
    records: dict[str, TargetRecord],
    metric: Metric,
    read: Callable[[int], float | None],
) -> None:
    for target in targets:
        death = target.death()
        rss = read(target.pid) if target.pid and not death else None
        if rss is not None:
            records[target.name].add(metric, rss)
        elif death:
            records[target.name].fail(metric, death)


def _with_death(reason: str, target: Target) -> str:
    """The failure, plus the target's exit status and log when it is no longer running."""
    death = target.death()
    return f"{reason}\n{death}" if death else reason


def _start_targets(
    settings: BenchSettings,
    stack: ExitStack,
    seeded: Seeded,
    tls: tuple[Path, Path],
    progress: Progress,
) -> tuple[dict[str, TargetRecord], list[Target]]:
    records = {name: TargetRecord(name) for name in settings.targets}
    targets: list[Target] = []
    gatekeeper_env = {**GATEKEEPER_ENV, **settings.gatekeeper_env}
    setup = TargetSetup(seeded.workdir, seeded.registry, gatekeeper_env, tls)
    for name in settings.targets:
        try:
            targets.append(start_target(name, stack, setup))
            progress.say(f"started {name} at {targets[-1].url}")
        except TargetUnavailable as exc:
            records[name].skipped = str(exc)
            progress.say(f"SKIPPING {name}: {exc}")
    return records, targets


def _phases(settings: BenchSettings, client: httpx.Client, seeded: Seeded) -> list[Phase]:
    """Pull, push and manifest load, in that order (pushes leave dirty pages behind)."""
    layer, image, storage_root = seeded.layer, seeded.image, seeded.registry.storage_root

    def pull(target: Target) -> dict[Metric, float]:
        url = f"{target.url}/v2/{REPO}/blobs/{layer.blob.digest}"
        with _ServerCpu(target) as cpu:
            transfer = curl.download(url, target.cacert)
        if transfer.status != 200 or transfer.downloaded != layer.blob.size:
            detail = registry_api.describe_failure(client, url, {})
            raise MeasurementError(f"GET blob got {transfer.downloaded} bytes: {detail}")
        figures = {PULL: transfer.mb_per_s(layer.blob.size)}
        return figures | cpu.per(PULL_CPU, layer.blob.size / 2**30)

    def push(target: Target) -> dict[Metric, float]:
        with layer.unique_variant() as blob:
            try:
                with _ServerCpu(target) as cpu:
                    transfer = registry_api.push_blob_file(
                        client, target.url, REPO, blob, target.cacert
                    )
            finally:
                registry_api.forget_blob(storage_root, REPO, blob.digest)
        return {PUSH: transfer.mb_per_s(blob.size)} | cpu.per(PUSH_CPU, blob.size / 2**30)

    def manifests(target: Target) -> dict[Metric, float]:
        spec = LoadSpec(
            url=f"{target.url}/v2/{REPO}/manifests/{TAG}",
            headers={"Accept": MANIFEST_MEDIA_TYPE},
            expected_size=len(image.manifest),
            count=settings.requests,
            concurrency=settings.concurrency,
            warmup=settings.warmup,
            cacert=target.cacert,
        )
        with _ServerCpu(target) as cpu:
            result = run_load(spec)
        # By digest: what the gatekeeper can answer from the registry's files (sendfile target).
        digest_url = f"{target.url}/v2/{REPO}/manifests/{image.manifest_digest}"
        by_digest = run_load(replace(spec, url=digest_url))
        figures = {
            MANIFEST_RPS: result.per_second,
            MANIFEST_P50: result.p50_ms,
            MANIFEST_P99: result.p99_ms,
            DIGEST_RPS: by_digest.per_second,
            DIGEST_P99: by_digest.p99_ms,
        }
        # Warm-up requests are served inside the same window, so they count too (in ms).
        return figures | cpu.per(MANIFEST_CPU, (spec.count + spec.warmup) / 1000)

    return [
        Phase("pull", (PULL, PULL_CPU), pull, warm_up=True),
        Phase("push", (PUSH, PUSH_CPU), push, warm_up=False),
        Phase(
            "manifests",
            (MANIFEST_RPS, MANIFEST_P50, MANIFEST_P99, MANIFEST_CPU, DIGEST_RPS, DIGEST_P99),
            manifests,
            warm_up=False,
        ),
    ]


def _run_phase(
    phase: Phase,
    targets: list[Target],
    records: dict[str, TargetRecord],
    repeats: int,
    progress: Progress,
) -> None:
    """Run ``phase`` ``repeats`` times per target, round-robin, rotating who goes first."""
    label = phase.metrics[0].key
    for target in targets if phase.warm_up else []:
        # A failure here is reported by the timed runs, which will fail the same way.
        with contextlib.suppress(MeasurementError):
            phase.measure(target)
    for run in range(repeats if targets else 0):
        shift = run % len(targets)
        for target in targets[shift:] + targets[:shift]:
            record = records[target.name]
            if label in record.failures:
                continue
            try:
                figures = phase.measure(target)
            except MeasurementError as exc:
                reason = _with_death(str(exc), target)
                for metric in phase.metrics:
                    record.fail(metric, reason)
                progress.say(f"{label} {target.name}: FAILED: {reason}")
                continue
            for metric, value in figures.items():
                record.add(metric, value)
            shown = ", ".join(f"{v:.1f} {m.unit}" for m, v in figures.items())
            progress.say(f"{label} {target.name} run {run + 1}/{repeats}: {shown}")


def _redacted(env: dict[str, str]) -> dict[str, str]:
    """``--gatekeeper-env`` for the JSON, without values that look like credentials."""
    secret = ("TOKEN", "PASSWORD", "SECRET", "KEY")
    return {k: "(redacted)" if any(w in k.upper() for w in secret) else v for k, v in env.items()}


def _header(settings: BenchSettings) -> str:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"proxy bench: {settings.size_mib} MiB blob, median of {settings.repeats}, "
        f"{settings.requests} manifest GETs at concurrency {settings.concurrency}; "
        f"{os.cpu_count()} CPUs, load average now {load}"
    )


if __name__ == "__main__":
    from bench.cli import proxy_bench

    sys.exit(proxy_bench())
