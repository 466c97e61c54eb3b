"""Latency percentiles and throughput of a load run, per request class, and the ratio table.

A run's figures only mean something next to the same load sent straight to the registry in the
same run, so the report puts each gatekeeper figure beside the direct one and divides.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.traffic import BLOB_PULL, KINDS, Sent

ERROR_EXAMPLES = 5


@dataclass(frozen=True)
class KindStats:
    """One request class (see ``bench.traffic.KINDS``) over one run."""

    requests: int
    per_second: float
    p50_ms: float | None
    """None when no request of this class completed."""
    p99_ms: float | None


@dataclass(frozen=True)
class RunStats:
    """Everything reported about one target's run."""

    seconds: float
    """Wall time of the run, generator start to the last client's end."""
    requests: int
    errors: int
    error_examples: tuple[str, ...]
    kinds: Mapping[str, KindStats]
    pulled_mb_per_second: float
    """Blob bytes pulled per second, in MB (10^6)."""
    generator_cpu_seconds: float
    """CPU the load generator used; close to ``seconds`` per process means it was the limit."""
    server_cpu_seconds: float | None
    """CPU of the target's own process during the run (the registry direct, or the gatekeeper
    without the registry behind it)."""

    @property
    def server_cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_seconds is None or not self.requests:
            return None
        return self.server_cpu_seconds * 1000 / self.requests

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def summarize(
    sent: Sequence[Sent],
    seconds: float,
    *,
    generator_cpu_seconds: float = 0.0,
    server_cpu_seconds: float | None = None,
) -> RunStats:
    """Percentiles over successful requests; errors counted apart (a fast 500 is no result)."""
    errors = [item for item in sent if item.error is not None]
    kinds = {kind: _kind([i for i in sent if i.kind == kind], seconds) for kind in KINDS}
    pulled = sum(i.body_bytes for i in sent if i.kind == BLOB_PULL and i.error is None)
    return RunStats(
        seconds=seconds,
        requests=len(sent),
        errors=len(errors),
        error_examples=tuple(f"{i.method} {i.path}: {i.error}" for i in errors[:ERROR_EXAMPLES]),
        kinds=kinds,
        pulled_mb_per_second=pulled / seconds / 1e6 if seconds else 0.0,
        generator_cpu_seconds=generator_cpu_seconds,
        server_cpu_seconds=server_cpu_seconds,
    )


def _kind(sent: Sequence[Sent], seconds: float) -> KindStats:
    good = sorted(item.seconds for item in sent if item.error is None)
    if not good:
        return KindStats(len(sent), 0.0, None, None)
    p99 = statistics.quantiles(good, n=100, method="inclusive")[98] if len(good) > 1 else good[0]
    return KindStats(
        requests=len(sent),
        per_second=len(good) / seconds if seconds else 0.0,
        p50_ms=statistics.median(good) * 1000,
        p99_ms=p99 * 1000,
    )


def render(runs: Mapping[str, RunStats], baseline: str = "direct") -> str:
    """One line per request class: each target's req/s, p50 and p99, and each ratio to
    ``baseline`` (target / baseline; for req/s higher is better, for latencies lower)."""
    names = list(runs)
    base = runs.get(baseline)
    head = "".join(f"{name[:10]:>11}" for name in names) + "    ratio"
    lines = [
        f"{'':<16}| {'req/s (MB/s for bytes)':^{len(head)}} | "
        f"{'p50 ms':^{len(head)}} | {'p99 ms':^{len(head)}}",
        f"{'class':<16}| {head} | {head} | {head}",
    ]
    for label in ("all requests", "blob bytes", *KINDS):
        cells = []
        for unit in ("rate", "p50", "p99"):
            values = [_value(runs[name], label, unit) for name in names]
            reference = _value(base, label, unit) if base is not None else None
            text = "".join(f"{v:11.1f}" if v is not None else f"{'-':>11}" for v in values)
            last = values[-1]
            ratio = f"{last / reference:9.2f}" if last is not None and reference else f"{'-':>9}"
            cells.append(text + ratio)
        lines.append(f"{label:<16}| " + " | ".join(cells))
    for name, run in runs.items():
        server = run.server_cpu_ms_per_request
        lines.append(
            f"{name}: {run.requests} requests in {run.seconds:.1f}s, {run.errors} errors; "
            + (f"server CPU {server:.2f} ms/request; " if server is not None else "")
            + f"load generator CPU {run.generator_cpu_seconds:.1f}s"
            + "".join(f"\n    {example}" for example in run.error_examples)
        )
    target = runs[names[-1]].server_cpu_ms_per_request
    reference = base.server_cpu_ms_per_request if base is not None else None
    if target is not None and reference:
        lines.append(
            f"{names[-1]} CPU per request / {baseline}'s: {target / reference:.2f} "
            "(the proxy's own cost against the registry's, steadier than wall time)"
        )
    return "\n".join(lines)


def _value(run: RunStats | None, label: str, unit: str) -> float | None:
    if run is None:
        return None
    if label == "all requests":
        return run.per_second if unit == "rate" else None
    if label == "blob bytes":
        return run.pulled_mb_per_second if unit == "rate" else None
    kind = run.kinds[label]
    return {"rate": kind.per_second, "p50": kind.p50_ms, "p99": kind.p99_ms}[unit]
