"""Read one layer blob as a stream: decompress, parse tar, check every entry, hand package
databases to a visitor.

Nothing is extracted and nothing but the files a visitor asks for (each bounded by
``max_file_bytes``) is held in memory; a larger file a visitor can take as a stream goes by in
bounded chunks (:class:`ChunkSink`). Hostile input is a :class:`Problem`, never an exception:
``..`` and absolute paths, device files, hard links to files that are not earlier in the layer,
over-long paths and headers are recorded and the entry skipped; exceeded limits, truncation and
corruption are recorded and end the read (see ``rules``). What no visitor was shown is counted
too (:attr:`LayerReport.unread`, :attr:`LayerReport.stopped`): a scanner that did not see a file
must not say it found nothing in it.

Several scanners share one read (:func:`read_parts`, one :class:`Part` each); the blocking part
(:func:`read_tar`, :func:`read_parts`) runs in a worker thread fed by ``bridge.ChunkSource``; it is
also what unit tests drive directly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from verifiers.base import BlobOpener, SourceUnavailable, VerifierError
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
STREAM_CHUNK = SKIP_CHUNK
"""Largest piece of a streamed file handed to a sink at once."""

UNREAD_LONG_PATH = "with a path over max_path_length"
UNREAD_OUTSIDE = "with a path outside the layer root"
UNREAD_HEADER = "behind a tar header over max_header_bytes"
UNREAD_TYPE = "of a tar entry type that is not read, holding data"
UNREAD_WHITEOUT = "marked as whiteouts, holding data"
"""Why an entry was shown to no visitor (:attr:`LayerReport.unread`); phrased to follow a
count in a finding's evidence (``2 with a path over max_path_length``)."""
UNREAD_ENTRIES = frozenset({UNREAD_LONG_PATH, UNREAD_OUTSIDE, UNREAD_HEADER})
"""The reasons for which not even the entry's metadata was shown (to a part's ``seen``)."""
R = TypeVar("R")


class Visitor(Protocol):
    """A scanner: says which files it wants, then gets their bytes (in the reader's thread).

    ``wants`` sees every regular file with its tar metadata (size, mode, owner), so a scanner
    can pick executables or setuid files, not only known paths."""

    def wants(self, path: str, entry: Entry) -> bool: ...

    def visit(self, path: str, data: bytes) -> None: ...


class ChunkSink(Protocol):
    """Takes one file too large to hold, in order, in pieces of at most :data:`STREAM_CHUNK`.

    ``close`` is called once the whole file was fed, and only then: a read that ends inside
    the file (truncation, a limit) leaves the sink unclosed, so a partial file never yields a
    result (a hash of half a file, build info cut short)."""

    def feed(self, chunk: bytes) -> None: ...

    def close(self) -> None: ...


Stream = Callable[[str, Entry], ChunkSink | None]
"""A part's offer to take a file over its limit as a stream: a sink, or None for ``too_large``."""

TooLarge = Callable[[str, Entry, "LayerReport"], None]
"""What a part does with a file it wanted that is over its per-file limit."""


def record_too_large(path: str, entry: Entry, report: LayerReport) -> None:
    """The inventory's reaction to an oversized package database: a layer problem."""
    report.problem("layer.file-too-large", f"{entry.size} bytes", path)


@dataclass
class Part:
    """One visitor of a read that several scanners share.

    Each part has its own per-file limit (the secret scanner reads text files up to 1 MiB, the
    malware scanner reads files whole up to 64 MiB): a file is read once, up to the largest limit
    among the parts that want it, and a part whose limit it exceeds gets ``too_large`` instead
    of the data, unless its ``stream`` returns a :class:`ChunkSink`: the file is then read
    once in bounded chunks, fed to every such sink (and whole to the parts it fits), so files
    of any size can be hashed or searched without being held. ``stream`` defaults to the
    visitor's own ``stream`` method when it has one. ``seen`` (optional) is called with every
    checked entry of any kind, directories included, for scanners that judge metadata only
    (setuid bits, world-writable directories).

    A part whose visitor raises is dropped from the rest of the read and keeps the exception in
    ``error``; the other parts go on, so a bug in one scanner does not cost the others their
    result (its own caller gets an error, and the policy fails closed on it).
    """

    visitor: Visitor
    max_file_bytes: int
    too_large: TooLarge = record_too_large
    seen: Callable[[str, Entry], None] | None = None
    error: BaseException | None = None
    stream: Stream | None = None

    def __post_init__(self) -> None:
        if self.stream is None:
            offered = getattr(self.visitor, "stream", None)
            self.stream = offered if callable(offered) else None


@dataclass
class LayerReport:
    """What reading one layer saw besides the visited files."""

    format: str = ""
    entries: int = 0
    decompressed_bytes: int = 0
    whiteouts: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unread: dict[str, int] = field(default_factory=dict)
    """Entries shown to no visitor although they may hold what a scanner looks for, by reason
    (``UNREAD_*``), every one counted (``problems`` records only the first few): an entry
    skipped for its path, behind a header too large to read, of a type that is not read but
    has data, or a whiteout that has data. Content checks report them as not inspected."""
    stopped: str = ""
    """Rule id of the problem that ended the read before the end of the layer (a limit,
    truncation, corruption), or ``""``: every entry after it went unseen and uncounted."""
    _counts: dict[str, int] = field(default_factory=dict)

    def unseen(self, reason: str) -> None:
        """Count one entry shown to no visitor (see :attr:`unread`)."""
        self.unread[reason] = self.unread.get(reason, 0) + 1

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
    if not (
        name.startswith(("/", "."))
        or name.endswith("/")
        or "//" in name
        or "/." in name
        or not name
    ):  # the usual name, already normal (no empty, "." or ".." part): kept as it is
        return name, None
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
        name = entry.name
        limit = self.limits.max_path_length
        # at most 4 UTF-8 bytes a character: most names need no encoding to be measured
        if len(name) * 4 > limit and len(name.encode("utf-8", "surrogateescape")) > limit:
            report.problem("layer.path-too-long", f"{len(name)} characters", name[:200])
            report.unseen(UNREAD_LONG_PATH)
            return None
        path, rule = normalise(name)
        if rule:
            report.problem(rule, f"entry {name!r}", name[:200])
            report.unseen(UNREAD_OUTSIDE)
            return None
        parent, _, base = path.rpartition("/") if WHITEOUT in path else ("", "", "")
        if base.startswith(WHITEOUT):
            if base == OPAQUE:
                report.opaque.append(parent)
            else:
                report.whiteouts.append(f"{parent}/{base[4:]}" if parent else base[4:])
            if entry.size:  # a runtime makes it a whiteout; ``tar -x`` writes the data out
                report.unseen(UNREAD_WHITEOUT)
            return None
        if entry.kind is Kind.OTHER and entry.size:  # GNU tar extracts these as files
            report.unseen(UNREAD_TYPE)
        elif entry.kind is Kind.DEVICE:
            report.problem("layer.device-file", f"device file {path!r}", path)
        elif entry.kind is Kind.HARDLINK:
            target, bad = normalise(entry.link)
            if bad or hash(target) not in self.seen:
                report.problem("layer.hardlink-outside", f"{path!r} -> {entry.link!r}", path)
        self.seen.add(hash(path))
        return path


def read_tar(source: Source, limits: ScanLimits, visitor: Visitor, deadline: float) -> LayerReport:
    """Read a (compressed) tar stream to its end or its first fatal problem."""
    part = Part(visitor, limits.max_file_bytes)
    report = read_parts(source, limits, [part], deadline)
    if part.error is not None:
        raise part.error
    return report


def _offer(
    parts: Sequence[Part], path: str, entry: Entry, stream: TarStream, report: LayerReport
) -> None:
    """Hand one entry to every part that wants it, reading its data at most once.

    The hot path of a read (once per entry, up to millions per layer): no list is built for
    an entry nobody wants."""
    for part in parts:
        if part.seen is not None and part.error is None:
            _guard(part, part.seen, path, entry)
    if entry.kind is not Kind.FILE:
        return
    wanting: list[Part] | None = None
    for part in parts:
        if part.error is not None:
            continue
        try:  # what _guard does, without its two calls per file and part
            wanted = part.visitor.wants(path, entry)
        except Exception as exc:
            part.error = exc
            continue
        if wanted:
            wanting = [*wanting, part] if wanting else [part]
    if wanting is None:
        return
    if len(wanting) == 1 and entry.size <= wanting[0].max_file_bytes:  # the usual case
        data = stream.read(entry.size)
        if data is not None:
            _guard(wanting[0], wanting[0].visitor.visit, path, data)
        return
    _offer_to_several(wanting, path, entry, stream, report)


def _offer_to_several(
    wanting: list[Part], path: str, entry: Entry, stream: TarStream, report: LayerReport
) -> None:
    """One file for several parts, or over some part's limit: whole to the parts it fits,
    in chunks to the parts that stream it, ``too_large`` to the rest; read once either way."""
    fitting = [p for p in wanting if entry.size <= p.max_file_bytes]
    sinks: list[tuple[Part, ChunkSink]] = []
    for part in wanting:
        if entry.size <= part.max_file_bytes:
            continue
        sink = _call(part, part.stream, path, entry) if part.stream is not None else None
        if sink is not None:
            sinks.append((part, sink))
        elif part.error is None:
            _guard(part, part.too_large, path, entry, report)
    if not fitting:
        if sinks:
            _feed(sinks, stream.chunks(STREAM_CHUNK))
        return
    data = stream.read(entry.size)
    if data is None:  # not reached: the limit asked for is the entry's own size
        return
    for part in fitting:
        _guard(part, part.visitor.visit, path, data)
    if sinks:  # the file is in memory for the others anyway: the same pieces as streamed
        _feed(sinks, (data[at : at + STREAM_CHUNK] for at in range(0, len(data), STREAM_CHUNK)))


def _feed(sinks: list[tuple[Part, ChunkSink]], chunks: Iterable[bytes]) -> None:
    """Every chunk to every sink whose part is still working, then ``close`` each; when no
    sink is left the rest of the file is not read out (the stream skips it)."""
    for chunk in chunks:
        for part, sink in sinks:
            _guard(part, sink.feed, chunk)
        if any(part.error is not None for part, _ in sinks):
            sinks = [(part, sink) for part, sink in sinks if part.error is None]
            if not sinks:
                return
    for part, sink in sinks:
        _guard(part, sink.close)


def _guard(part: Part, call: Callable[..., object], *args: object) -> bool:
    """Run one part's callback; an exception retires the part (see :class:`Part`)."""
    return bool(_call(part, call, *args))


def _call(part: Part, call: Callable[..., R], *args: object) -> R | None:
    """``call(*args)``, or None when it raised: the exception retires the part."""
    try:
        return call(*args)
    except Exception as exc:
        part.error = exc
        return None


def read_parts(
    source: Source, limits: ScanLimits, parts: Sequence[Part], deadline: float
) -> LayerReport:
    """Read a (compressed) tar stream once for several visitors (see :class:`Part`).

    ``limits.max_file_bytes`` is not used here: each part brings its own."""
    report = LayerReport()
    checker = _Checker(limits, report)
    meter: Meter | None = None
    stream: TarStream | None = None
    try:
        report.format, inner = open_decompressed(source)
        meter = Meter(inner, source, limits, deadline)
        stream = TarStream(meter, max_header_bytes=limits.max_header_bytes)
        for entry in stream:
            report.entries += 1
            if report.entries > limits.max_entries:
                raise LimitExceeded("layer.too-many-entries", f"over {limits.max_entries}")
            path = checker.accept(entry)
            if path is not None:
                _offer(parts, path, entry, stream, report)
        while meter.read(SKIP_CHUNK):  # to the end, so a truncated or corrupt tail is seen
            pass
    except (LimitExceeded, CorruptStream, TarError) as exc:
        report.problem(exc.rule_id, str(exc))
        report.stopped = exc.rule_id
    for _ in range(stream.oversized_headers if stream is not None else 0):
        # the entry after it is read under the header's fallback name and size, if at all
        report.problem("layer.oversized-header", f"over {limits.max_header_bytes} bytes")
        report.unseen(UNREAD_HEADER)
    report.decompressed_bytes = meter.total if meter is not None else 0
    report.finish()
    return report


async def read_layer(
    blobs: BlobOpener, digest: str, limits: ScanLimits, visitor: Visitor
) -> LayerReport:
    """Stream ``digest`` from ``blobs`` through :func:`read_tar` in a worker thread."""
    part = Part(visitor, limits.max_file_bytes)
    report = await read_layer_parts(blobs, digest, limits, [part])
    if part.error is not None:
        raise part.error
    return report


async def read_layer_parts(
    blobs: BlobOpener, digest: str, limits: ScanLimits, parts: Sequence[Part]
) -> LayerReport:
    """Stream ``digest`` from ``blobs`` through :func:`read_parts` in a worker thread."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + limits.max_seconds
    async with blobs.open(digest) as chunks:
        source = ChunkSource(chunks, loop, deadline, stop)
        try:
            report = await asyncio.to_thread(read_parts, source, limits, parts, deadline)
        except UpstreamFailed as exc:
            if isinstance(exc.__cause__, SourceUnavailable):
                raise SourceUnavailable(f"layer {digest}: {exc.__cause__}") from exc
            raise VerifierError(f"layer {digest}: {exc}") from exc
        finally:
            stop.set()
    log.debug(
        "layer %s: %s, %d entries, %d bytes in %.2fs for %d scanners",
        digest,
        report.format,
        report.entries,
        report.decompressed_bytes,
        time.monotonic() - started,
        len(parts),
    )
    return report
