"""A closed-loop load generator for small GETs: a fixed number of requests at fixed concurrency.

A fixed count (rather than a fixed duration) makes every target do the same work, and closed-loop
workers on one keep-alive pool mirror a client pulling many images. The generator is aiohttp in
this process, so nothing beyond the project's dependencies is needed; on two cores it shares the
CPU with the target, which caps the direct baseline the most (see ``bench/README.md``).
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.errors import MeasurementError


@dataclass(frozen=True)
class LoadResult:
    """The timed part of one load run (warm-up requests excluded)."""

    requests: int
    """Requests completed, all with the expected status and body size."""
    seconds: float
    """Wall time from the first request sent to the last response read."""
    p50_ms: float
    """Median latency: request sent to body fully read."""
    p99_ms: float
    """99th-percentile latency, the tail a busy gate adds."""

    @property
    def per_second(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds


@dataclass(frozen=True)
class LoadSpec:
    """What to request, how often and how many at once."""

    url: str
    headers: dict[str, str]
    expected_size: int
    """Body size every response must have; anything else is an error, not a fast answer."""
    count: int
    concurrency: int
    warmup: int
    """Untimed requests first, so connections are open and caches warm on every target alike."""
    cacert: Path | None = None
    """The CA to trust for an https ``url``."""


def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``spec`` on a fresh event loop; raise MeasurementError on the first bad response."""
    return asyncio.run(_load(spec))


async def _load(spec: LoadSpec) -> LoadResult:
    trust = ssl.create_default_context(cafile=spec.cacert) if spec.cacert else True
    connector = aiohttp.TCPConnector(limit=spec.concurrency, ssl=trust)
    async with aiohttp.ClientSession(connector=connector, headers=spec.headers) as session:
        await _drive(session, spec, spec.warmup, [])
        latencies: list[float] = []
        start = time.perf_counter()
        await _drive(session, spec, spec.count, latencies)
        seconds = time.perf_counter() - start
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return LoadResult(
        requests=len(latencies),
        seconds=seconds,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=cuts[98] * 1000,
    )


async def _drive(
    session: aiohttp.ClientSession, spec: LoadSpec, count: int, latencies: list[float]
) -> None:
    remaining = [count]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            latencies.append(await _one(session, spec))

    workers = [asyncio.create_task(worker()) for _ in range(min(spec.concurrency, count))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()


async def _one(session: aiohttp.ClientSession, spec: LoadSpec) -> float:
    start = time.perf_counter()
    try:
        async with session.get(spec.url) as response:
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise MeasurementError(f"GET {spec.url}: {type(exc).__name__}: {exc}") from exc
    if response.status != 200 or len(body) != spec.expected_size:
        raise MeasurementError(
            f"GET {spec.url}: status {response.status}, {len(body)} bytes "
            f"(want 200 and {spec.expected_size} bytes): {body[:300]!r}"
        )
    return time.perf_counter() - start
