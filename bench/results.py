"""What is measured, the raw runs per target, and the ratios the report is about.

Every ratio is ``target / baseline`` of the medians, whatever the metric; each metric says
whether higher or lower is better, so the report never mixes "speed-up" and "slow-down" factors.
A skipped target or a failed measurement is a recorded reason, never a zero.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Metric:
    """One figure the benchmark reports per target."""

    key: str
    """Stable name used in the JSON results."""
    title: str
    """Heading in the printed table."""
    unit: str
    higher_is_better: bool


FIRST_GET = Metric(
    "first_manifest_ms", "first manifest GET, cold (a gate verifies the image)", "ms", False
)
PULL = Metric("pull_mb_s", "blob pull, curl GET", "MB/s", higher_is_better=True)
PULL_CPU = Metric("pull_cpu_s_per_gib", "server CPU per GiB pulled", "s", False)
PUSH = Metric("push_mb_s", "blob push, curl monolithic PUT", "MB/s", higher_is_better=True)
PUSH_CPU = Metric("push_cpu_s_per_gib", "server CPU per GiB pushed", "s", False)
MANIFEST_RPS = Metric("manifest_rps", "manifest GET by tag", "req/s", higher_is_better=True)
MANIFEST_P50 = Metric("manifest_p50_ms", "manifest GET p50 latency", "ms", higher_is_better=False)
MANIFEST_P99 = Metric("manifest_p99_ms", "manifest GET p99 latency", "ms", higher_is_better=False)
MANIFEST_CPU = Metric("manifest_cpu_ms", "server CPU per manifest GET", "ms", False)
DIGEST_RPS = Metric("digest_rps", "manifest GET by digest", "req/s", higher_is_better=True)
DIGEST_P99 = Metric("digest_p99_ms", "manifest GET by digest p99", "ms", higher_is_better=False)
START_RSS = Metric("start_rss_mib", "server RSS after start-up (VmRSS)", "MiB", False)
PEAK_RSS = Metric("peak_rss_mib", "server peak RSS (VmHWM, whole run)", "MiB", False)
PEAK_RSS_PROCESS = Metric(
    "peak_rss_process_mib", "server peak RSS of its largest process (VmHWM)", "MiB", False
)
METRICS = (
    FIRST_GET,
    PULL,
    PULL_CPU,
    PUSH,
    PUSH_CPU,
    MANIFEST_RPS,
    MANIFEST_P50,
    MANIFEST_P99,
    MANIFEST_CPU,
    DIGEST_RPS,
    DIGEST_P99,
    START_RSS,
    PEAK_RSS,
    PEAK_RSS_PROCESS,
)


@dataclass
class TargetRecord:
    """Runs collected for one target while the benchmark goes round-robin over targets."""

    name: str
    skipped: str | None = None
    """Why the target never ran (it did not start); its figures are absent, not zero."""
    runs: dict[str, list[float]] = field(default_factory=dict)
    """Metric key to the value of every repetition, in the order measured."""
    failures: dict[str, str] = field(default_factory=dict)
    """Metric key to the diagnosis of the first failed repetition; the metric is not reported."""

    def add(self, metric: Metric, value: float) -> None:
        self.runs.setdefault(metric.key, []).append(value)

    def fail(self, metric: Metric, reason: str) -> None:
        self.failures.setdefault(metric.key, reason)

    def median(self, metric: Metric) -> float | None:
        """Median of the runs, or None when skipped, failed or never measured."""
        if self.skipped or metric.key in self.failures or not self.runs.get(metric.key):
            return None
        return statistics.median(self.runs[metric.key])


def ratio(target: TargetRecord, baseline: TargetRecord | None, metric: Metric) -> float | None:
    """``target / baseline`` of the medians, None when either is missing or zero."""
    if baseline is None:
        return None
    mine, theirs = target.median(metric), baseline.median(metric)
    if mine is None or not theirs:
        return None
    return mine / theirs


@dataclass(frozen=True)
class Goal:
    """A performance goal: a ratio against a baseline of the same run (or an absolute cap)."""

    target: str
    metric: Metric
    baseline: str | None
    """Target name to divide by; None makes ``limit`` an absolute value in the metric's unit."""
    limit: float
    """Lowest acceptable ratio (or value) if higher is better, else the highest."""

    def describe(self) -> str:
        relation = ">=" if self.metric.higher_is_better else "<="
        against = f"x {self.baseline}" if self.baseline else self.metric.unit
        return f"{self.target} {self.metric.key} {relation} {self.limit:g} {against}"

    def value(self, records: Mapping[str, TargetRecord]) -> float | None:
        """The ratio (or value) this goal judges, None when it could not be measured."""
        target = records.get(self.target)
        if target is None:
            return None
        if self.baseline is None:
            return target.median(self.metric)
        return ratio(target, records.get(self.baseline), self.metric)

    def met(self, records: Mapping[str, TargetRecord]) -> bool | None:
        """True or False, or None when unmeasured (which the report calls out, not passes)."""
        value = self.value(records)
        if value is None:
            return None
        return value >= self.limit if self.metric.higher_is_better else value <= self.limit
