"""Read one layer blob as a stream: decompress, parse tar, check every entry, hand package
databases to a visitor.

Nothing is extracted and nothing but the files a visitor asks for (each bounded by
``max_file_bytes``) is held in memory. Hostile input is a :class:`Problem`, never an exception:
``..`` and absolute paths, device files, hard links to files that are not earlier in the layer,
over-long paths and headers are recorded and the entry skipped; exceeded limits, truncation and
corruption are recorded and end the read (see ``rules``).

The blocking part (:func:`read_tar`) runs in a worker thread fed by ``bridge.ChunkSource``; it is
also what unit tests drive directly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from verifiers.base import BlobOpener, VerifierError
from verifiers.scan.bridge import ChunkSource, UpstreamFailed
from verifiers.scan.decompress import (
    CorruptStream,
    LimitExceeded,
    Meter,
    Source,
    open_decompressed,
)
from verifiers.scan.limits import ScanLimits
from verifiers.scan.model import Problem
from verifiers.scan.rules import MAX_RECORDED
from verifiers.scan.tarstream import SKIP_CHUNK, Entry, Kind, TarError, TarStream

log = logging.getLogger("gatekeeper.scan")

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class Visitor(Protocol):
    """A scanner: says which files it wants, then gets their bytes (in the reader's thread).

    ``wants`` sees every regular file with its tar metadata (size, mode, owner), so a scanner
    can pick executables or setuid files, not only known paths."""

    def wants(self, path: str, entry: Entry) -> bool: ...

    def visit(self, path: str, data: bytes) -> None: ...


@dataclass
class LayerReport:
    """What reading one layer saw besides the visited files."""

    format: str = ""
    entries: int = 0
    decompressed_bytes: int = 0
    whiteouts: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)

    def problem(self, rule_id: str, detail: str, path: str = "") -> None:
        seen = self._counts.get(rule_id, 0) + 1
        self._counts[rule_id] = seen
        if seen <= MAX_RECORDED:
            self.problems.append(Problem(rule_id, detail, path))

    def finish(self) -> None:
        for rule_id, seen in self._counts.items():
            if seen > MAX_RECORDED:
                more = seen - MAX_RECORDED
                self.problems.append(Problem(rule_id, f"and {more} more entries", count=more))
        self._counts.clear()


def normalise(name: str) -> tuple[str, str | None]:
    """(path relative to the root, rule id of the problem with it or None)."""
    if name.startswith("/"):
        return name, "layer.absolute-path"
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        return name, "layer.path-traversal"
    return "/".join(parts), None


class _Checker:
    """Per-entry checks; remembers earlier paths (as hashes) to judge hard links."""

    def __init__(self, limits: ScanLimits, report: LayerReport) -> None:
        self.limits = limits
        self.report = report
        self.seen: set[int] = set()

    def accept(self, entry: Entry) -> str | None:
        """The entry's path if it is a plain member worth looking at, else None."""
        report = self.report
        if len(entry.name.encode("utf-8", "surrogateescape")) > self.limits.max_path_length:
            report.problem("layer.path-too-long", f"{len(entry.name)} characters", entry.name[:200])
            return None
        path, rule = normalise(entry.name)
        if rule:
            report.problem(rule, f"entry {entry.name!r}", entry.name[:200])
            return None
        parent, _, base = path.rpartition("/")
        if base.startswith(WHITEOUT):
            if base == OPAQUE:
                report.opaque.append(parent)
            else:
                report.whiteouts.append(f"{parent}/{base[4:]}" if parent else base[4:])
            return None
        if entry.kind is Kind.DEVICE:
            report.problem("layer.device-file", f"device file {path!r}", path)
        elif entry.kind is Kind.HARDLINK:
            target, bad = normalise(entry.link)
            if bad or hash(target) not in self.seen:
                report.problem("layer.hardlink-outside", f"{path!r} -> {entry.link!r}", path)
        self.seen.add(hash(path))
        return path


def read_tar(source: Source, limits: ScanLimits, visitor: Visitor, deadline: float) -> LayerReport:
    """Read a (compressed) tar stream to its end or its first fatal problem."""
    report = LayerReport()
    checker = _Checker(limits, report)
    meter: Meter | None = None
    try:
        report.format, inner = open_decompressed(source)
        meter = Meter(inner, source, limits, deadline)
        stream = TarStream(meter, max_header_bytes=limits.max_header_bytes)
        for entry in stream:
            report.entries += 1
            if report.entries > limits.max_entries:
                raise LimitExceeded("layer.too-many-entries", f"over {limits.max_entries}")
            path = checker.accept(entry)
            if path is None or entry.kind is not Kind.FILE or not visitor.wants(path, entry):
                continue
            data = stream.read(limits.max_file_bytes)
            if data is None:
                report.problem("layer.file-too-large", f"{entry.size} bytes", path)
            else:
                visitor.visit(path, data)
        for _ in range(stream.oversized_headers):
            report.problem("layer.oversized-header", f"over {limits.max_header_bytes} bytes")
        while meter.read(SKIP_CHUNK):  # to the end, so a truncated or corrupt tail is seen
            pass
    except (LimitExceeded, CorruptStream, TarError) as exc:
        report.problem(exc.rule_id, str(exc))
    report.decompressed_bytes = meter.total if meter is not None else 0
    report.finish()
    return report


async def read_layer(
    blobs: BlobOpener, digest: str, limits: ScanLimits, visitor: Visitor
) -> LayerReport:
    """Stream ``digest`` from ``blobs`` through :func:`read_tar` in a worker thread."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + limits.max_seconds
    async with blobs.open(digest) as chunks:
        source = ChunkSource(chunks, loop, deadline, stop)
        try:
            report = await asyncio.to_thread(read_tar, source, limits, visitor, deadline)
        except UpstreamFailed as exc:
            raise VerifierError(f"layer {digest}: {exc}") from exc
        finally:
            stop.set()
    log.debug(
        "layer %s: %s, %d entries, %d bytes in %.2fs",
        digest,
        report.format,
        report.entries,
        report.decompressed_bytes,
        time.monotonic() - started,
    )
    return report
