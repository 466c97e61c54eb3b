"""``python -m bench.client_bench``: which Python HTTP client should carry blob bodies upstream.

The gatekeeper's streaming mode reads every pulled blob from the registry through a Python
client, so that client's read loop bounds the whole path. This streams the same layer from the
registry with httpx (``aiter_raw``) and aiohttp (``iter_any``, ``iter_chunked``, and a larger read
buffer) in one process, discarding the bytes, with curl alongside as the ceiling a C client
reaches. Besides MB/s it reports CPU seconds per GiB: on two cores the CPU a client burns is CPU
the proxy's other half (writing to the downstream socket) does not get.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench import curl, environment
from bench.errors import BenchError, MeasurementError
from bench.report import render, write_json
from bench.results import Metric, TargetRecord, ratio
from bench.seeding import REPO, Progress, seed_registry

RESULTS_DIR = Path(__file__).resolve().parent / "results"
THROUGHPUT = Metric("mb_s", "stream the layer from the registry", "MB/s", higher_is_better=True)
CPU = Metric("cpu_s_per_gib", "client CPU time per GiB (user+sys)", "s", higher_is_better=False)
HTTPX = "httpx aiter_raw()"
CURL = "curl (reference)"


@dataclass(frozen=True)
class Client:
    """One way of reading a blob body to nowhere."""

    read: Callable[[str], int]
    """Stream the URL's body, discard it, return how many bytes there were."""
    cpu_of: int
    """Whose CPU time the read costs: ``RUSAGE_SELF`` (Python) or ``RUSAGE_CHILDREN`` (curl)."""


@dataclass(frozen=True)
class Read:
    """Cost of one full read of the layer."""

    seconds: float
    """Wall time, request to last byte."""
    cpu_seconds: float
    """User plus system CPU time of the reading process."""


async def _httpx_aiter_raw(url: str) -> int:
    received = 0
    async with (
        httpx.AsyncClient(timeout=None, trust_env=False) as client,
        client.stream("GET", url) as response,
    ):
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            received += len(chunk)
    return received


def _aiohttp(
    iterate: Callable[[aiohttp.StreamReader], AsyncIterator[bytes]], bufsize: int = 2**16
) -> Callable[[str], Coroutine[Any, Any, int]]:
    """An aiohttp reader: ``iterate`` picks the chunk iterator, ``bufsize`` the read buffer."""

    async def read(url: str) -> int:
        received = 0
        timeout = aiohttp.ClientTimeout(total=None)
        async with (
            aiohttp.ClientSession(timeout=timeout, read_bufsize=bufsize) as session,
            session.get(url, auto_decompress=False) as response,
        ):
            response.raise_for_status()
            async for chunk in iterate(response.content):
                received += len(chunk)
        return received

    return read


def _python(reader: Callable[[str], Coroutine[Any, Any, int]]) -> Client:
    """Each read runs on its own event loop with its own client; that set-up costs microseconds
    against a transfer of seconds, and keeps one variant's leftovers out of the next's."""

    def read(url: str) -> int:
        try:
            return asyncio.run(reader(url))
        except (aiohttp.ClientError, httpx.HTTPError) as exc:
            raise MeasurementError(f"{type(exc).__name__}: {exc}") from exc

    return Client(read=read, cpu_of=resource.RUSAGE_SELF)


def _curl(url: str) -> int:
    transfer = curl.download(url)
    if transfer.status != 200:
        raise MeasurementError(f"curl: status {transfer.status}")
    return transfer.downloaded


CLIENTS: dict[str, Client] = {
    CURL: Client(read=_curl, cpu_of=resource.RUSAGE_CHILDREN),
    HTTPX: _python(_httpx_aiter_raw),
    "aiohttp iter_any()": _python(_aiohttp(lambda content: content.iter_any())),
    "aiohttp iter_chunked(64 KiB)": _python(_aiohttp(lambda c: c.iter_chunked(64 << 10))),
    "aiohttp iter_chunked(256 KiB)": _python(_aiohttp(lambda c: c.iter_chunked(256 << 10))),
    "aiohttp iter_chunked(1 MiB)": _python(_aiohttp(lambda c: c.iter_chunked(1 << 20))),
    "aiohttp iter_any(), read_bufsize 1 MiB": _python(
        _aiohttp(lambda content: content.iter_any(), bufsize=1 << 20)
    ),
}


@dataclass(frozen=True)
class ClientBenchSettings:
    """One run's parameters, recorded verbatim in the JSON results."""

    size_mib: int
    repeats: int
    results_dir: Path
    keep_workdir: bool


def main(settings: ClientBenchSettings) -> int:
    progress = Progress()
    try:
        records = _run(settings, progress)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(f"client bench: {settings.size_mib} MiB layer, median of {settings.repeats}")
    print(render(records, (), metrics=(THROUGHPUT, CPU), baselines=(HTTPX, CURL)))
    print(f"\n{_verdict(records)}")
    context = {**asdict(settings), "results_dir": str(settings.results_dir)}
    context |= {"environment": environment.describe(), "seconds": round(progress.elapsed(), 1)}
    path = write_json(
        settings.results_dir, "client-bench", context, records, (), (THROUGHPUT, CPU), (HTTPX, CURL)
    )
    print(f"results: {path}  ({progress.elapsed():.0f}s)")
    return 0


def _run(settings: ClientBenchSettings, progress: Progress) -> list[TargetRecord]:
    with ExitStack() as stack:
        client = stack.enter_context(httpx.Client(timeout=120, trust_env=False))
        seeded = seed_registry(
            stack, client, settings.size_mib << 20, keep=settings.keep_workdir, progress=progress
        )
        size = seeded.layer.blob.size
        url = f"{seeded.registry.url}/v2/{REPO}/blobs/{seeded.layer.blob.digest}"
        names = list(CLIENTS)
        records = {name: TargetRecord(name) for name in names}
        _measure(CLIENTS[CURL], url, size)  # Untimed: brings the layer into the page cache.
        for run in range(settings.repeats):
            shift = run % len(names)
            for name in names[shift:] + names[:shift]:
                try:
                    read = _measure(CLIENTS[name], url, size)
                except MeasurementError as exc:
                    records[name].fail(THROUGHPUT, f"{name}: {exc}")
                    records[name].fail(CPU, f"{name}: {exc}")
                    continue
                records[name].add(THROUGHPUT, size / read.seconds / 1e6)
                records[name].add(CPU, read.cpu_seconds / (size / 2**30))
                progress.say(f"{name} run {run + 1}: {size / read.seconds / 1e6:.1f} MB/s")
        return [records[name] for name in names]


def _measure(client: Client, url: str, size: int) -> Read:
    """One full read of ``url``, checked for length."""
    cpu_before = _cpu_seconds(client.cpu_of)
    start = time.perf_counter()
    received = client.read(url)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds(client.cpu_of) - cpu_before
    if received != size:
        raise MeasurementError(f"read {received} bytes, expected {size}")
    return Read(seconds=seconds, cpu_seconds=cpu)


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _verdict(records: list[TargetRecord]) -> str:
    """httpx against the best aiohttp variant, on both figures: the question this answers."""
    by_name = {record.name: record for record in records}
    aiohttp_names = [name for name in by_name if name.startswith("aiohttp")]
    speeds = {name: by_name[name].median(THROUGHPUT) for name in aiohttp_names}
    measured = {name: speed for name, speed in speeds.items() if speed is not None}
    if not measured or by_name[HTTPX].median(THROUGHPUT) is None:
        return "httpx or aiohttp did not complete a read; no verdict"
    best = max(measured, key=lambda name: measured[name])
    speed = ratio(by_name[best], by_name[HTTPX], THROUGHPUT) or 0.0
    cpu = ratio(by_name[best], by_name[HTTPX], CPU)
    cpu_text = f" and {cpu:.2f}x its CPU per GiB" if cpu is not None else ""
    return (
        f"fastest Python client for blob bodies: {best}, {speed:.2f}x the MB/s of {HTTPX}"
        f"{cpu_text} (differences between aiohttp variants within a run's spread are noise)"
    )


if __name__ == "__main__":
    from bench.cli import client_bench

    sys.exit(client_bench())
