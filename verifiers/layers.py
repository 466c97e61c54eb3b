"""Per-layer verifiers and the cache that makes each layer be read once.

Many images share layers (a base image under every service). A :class:`LayerVerifier` checks
one layer at a time; :class:`PerLayer` adapts it to the image-level protocol and consults a
:class:`LayerCache` keyed by (layer digest, verifier, version), so a shared layer is fetched and
scanned once however many images contain it.

Several verifiers read the *same* layers (``inventory``, ``vulnerabilities``, the content
checks). :class:`LayerReads` makes that one read: each verifier registers a
:class:`LayerScanner` when attached, and the first one that needs layer X starts a single read
that runs every registered scanner whose result for X is not cached yet; each result is cached
under its scanner's own (name, version).

Within one image, a layer listed several times is scanned once (:func:`distinct_layers`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

from verifiers.base import BlobOpener, Descriptor, Finding, Image, Severity, Skipped, VerifierError
from verifiers.scan.limits import ScanLimits
from verifiers.scan.reader import ChunkSink, LayerReport, Part, read_layer_parts
from verifiers.scan.tarstream import Entry

log = logging.getLogger("gatekeeper.scan")

T = TypeVar("T")


def distinct_layers(layers: Sequence[Descriptor]) -> tuple[Descriptor, ...]:
    """``layers`` (bottom first) with every repetition of a digest but the last one dropped.

    A manifest may list one layer many times; 10,000 times cost 10,000 cache look-ups and
    10,000 copies of each finding, minutes of a worker for nothing. Keeping only the last
    position loses nothing of the final filesystem: what the repeated layer writes, whites
    out or makes opaque is decided by its last application either way, and everything an
    earlier copy added is either hidden again or added again by that last one. So every
    layer verifier scans these, giving one read and one set of findings per digest.
    """
    last = {layer.digest: n for n, layer in enumerate(layers)}
    return tuple(layer for n, layer in enumerate(layers) if last[layer.digest] == n)


class LayerVerifier(Protocol):
    name: str
    version: str

    async def verify_layer(
        self, layer: Descriptor, blobs: BlobOpener
    ) -> list[Finding] | Skipped: ...


class LayerCache(Protocol):
    """Stored per-layer results; ``storage`` implements it, tests fake it."""

    async def get(
        self, layer_digest: str, verifier: str, version: str
    ) -> dict[str, Any] | None: ...

    async def put(
        self, layer_digest: str, verifier: str, version: str, outcome: dict[str, Any]
    ) -> None: ...


def _encode(result: list[Finding] | Skipped) -> dict[str, Any]:
    if isinstance(result, Skipped):
        return {"skipped": result.reason}
    return {
        "findings": [
            {
                "rule_id": f.rule_id,
                "severity": f.severity.name,
                "title": f.title,
                "location": f.location,
                "evidence": f.evidence,
            }
            for f in result
        ]
    }


def _decode(name: str, data: dict[str, Any]) -> list[Finding] | Skipped:
    if "skipped" in data:
        return Skipped(str(data["skipped"]))
    return [
        Finding(
            name, f["rule_id"], Severity[f["severity"]], f["title"], f["location"], f["evidence"]
        )
        for f in data.get("findings", [])
    ]


class PerLayer:
    """A LayerVerifier run over every layer of an image, with cached per-layer results."""

    def __init__(self, inner: LayerVerifier, cache: LayerCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.version = inner.version

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        findings: list[Finding] = []
        skipped: list[str] = []
        for layer in distinct_layers(image.layers):
            cached = await self.cache.get(layer.digest, self.name, self.version)
            if cached is None:
                result = await self.inner.verify_layer(layer, image.blobs)
                await self.cache.put(layer.digest, self.name, self.version, _encode(result))
            else:
                result = _decode(self.name, cached)
            if isinstance(result, Skipped):
                skipped.append(f"layer {layer.digest}: {result.reason}")
            else:
                findings.extend(replace(f, blob=f.blob or layer.digest) for f in result)
        if skipped:
            # A layer not checked is not a clean layer: the image is not checked either.
            return Skipped("; ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else ""))
        return findings


class LayerScan(Generic[T]):
    """One scanner's state while one layer is read (a fresh one per read); a reader visitor.

    Subclasses override what they need: ``wants``/``visit`` for file contents, ``seen`` (with
    ``sees_entries = True``) for the metadata of every entry, ``stream`` to take a file over
    the scanner's per-file limit in chunks, ``too_large`` for such files not streamed, and
    ``result`` to turn what they saw into the cached value.
    """

    sees_entries = False
    """Call :meth:`seen` for every entry (costs a call per entry, so off unless needed)."""

    def wants(self, path: str, entry: Entry) -> bool:
        return False

    def visit(self, path: str, data: bytes) -> None:
        return None

    def seen(self, path: str, entry: Entry) -> None:
        return None

    def stream(self, path: str, entry: Entry) -> ChunkSink | None:
        return None

    def too_large(self, path: str, entry: Entry, report: LayerReport) -> None:
        return None

    def result(self, report: LayerReport) -> T:
        raise NotImplementedError


@dataclass(frozen=True)
class LayerScanner(Generic[T]):
    """What a verifier registers with :class:`LayerReads`: how to scan one layer, and how its
    result goes to and from the layer cache."""

    name: str
    """Cache key part: the result kind (``inventory``, ``secrets``), not the verifier's
    configured name, so two verifiers wanting the same scan share it."""
    version: str
    """Changes whenever the same layer could give another result (schema, options)."""
    limits: ScanLimits
    """Layer-level limits of the read; ``max_file_bytes`` is this scanner's per-file limit."""
    start: Callable[[str], LayerScan[T]]
    """A fresh scan for the layer with this digest."""
    encode: Callable[[T], dict[str, Any]]
    decode: Callable[[dict[str, Any]], T]

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)


def read_group(limits: ScanLimits) -> str:
    """Scanners whose layer-level limits agree share a read; the per-file limit is each part's
    own, so it is left out."""
    return json.dumps(limits.model_dump(exclude={"max_file_bytes"}), sort_keys=True)


class LayerReads:
    """The process's shared layer reads: at most one read of a layer per process, whatever
    number of verifiers (and images) want it; results come from the cache when there.

    A read started for one scanner also runs every other registered scanner of the same read
    group (:func:`read_group`) that has neither a cached result nor a read in flight, so a
    verifier that asks later finds its result cached. Results are cached before the in-flight
    entry is dropped, so there is no window in which a second read could start.
    """

    def __init__(self, cache: LayerCache | None) -> None:
        self._cache = cache
        self._scanners: dict[tuple[str, str], LayerScanner[Any]] = {}
        self._inflight: dict[tuple[str, str, str], asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.reads = 0
        """Layers actually read from the blob store by this process (tests assert on it)."""

    def register(self, scanner: LayerScanner[Any]) -> None:
        self._scanners.setdefault(scanner.key, scanner)

    async def result(self, scanner: LayerScanner[T], digest: str, blobs: BlobOpener) -> T:
        """``scanner``'s result for layer ``digest``: in flight, cached, or from a new read."""
        self.register(scanner)
        key = (digest, *scanner.key)
        if key not in self._inflight:
            self._start(digest, blobs, read_group(scanner.limits))
        value: T = await asyncio.shield(self._inflight[key])
        return value

    def _start(self, digest: str, blobs: BlobOpener, group: str) -> None:
        loop = asyncio.get_running_loop()
        futures: dict[LayerScanner[Any], asyncio.Future[Any]] = {}
        for scanner in self._scanners.values():
            key = (digest, *scanner.key)
            if key in self._inflight or read_group(scanner.limits) != group:
                continue
            future: asyncio.Future[Any] = loop.create_future()
            futures[scanner] = self._inflight[key] = future
            future.add_done_callback(functools.partial(self._finished, key))
        task = asyncio.ensure_future(self._run(digest, blobs, futures))
        self._tasks.add(task)  # held, so it is not collected while every waiter is cancelled
        task.add_done_callback(self._tasks.discard)

    def _finished(self, key: tuple[str, str, str], future: asyncio.Future[Any]) -> None:
        self._inflight.pop(key, None)  # a failed read is not reused
        if not future.cancelled():
            future.exception()  # retrieved: a result nobody awaited is not an error

    async def _run(
        self, digest: str, blobs: BlobOpener, futures: dict[LayerScanner[Any], asyncio.Future[Any]]
    ) -> None:
        try:
            missing = {s: f for s, f in futures.items() if not await self._cached(s, digest, f)}
            if missing:
                await self._read(digest, blobs, missing)
        except asyncio.CancelledError:
            for future in futures.values():
                future.cancel()
            raise
        except Exception as exc:
            for future in futures.values():
                if not future.done():
                    future.set_exception(exc)

    async def _cached(
        self, scanner: LayerScanner[Any], digest: str, future: asyncio.Future[Any]
    ) -> bool:
        if self._cache is None:
            return False
        row = await self._cache.get(digest, *scanner.key)
        if row is None:
            return False
        try:
            future.set_result(scanner.decode(row))
        except (KeyError, TypeError, ValueError):
            log.warning(
                "cached %s result of layer %s is unreadable; scanning again", scanner.name, digest
            )
            return False
        return True

    async def _read(
        self, digest: str, blobs: BlobOpener, futures: dict[LayerScanner[Any], asyncio.Future[Any]]
    ) -> None:
        scans = {scanner: scanner.start(digest) for scanner in futures}
        parts = {
            scanner: Part(
                scan,
                scanner.limits.max_file_bytes,
                scan.too_large,
                scan.seen if scan.sees_entries else None,
                stream=scan.stream,
            )
            for scanner, scan in scans.items()
        }
        self.reads += 1
        limits = next(iter(futures)).limits
        report = await read_layer_parts(blobs, digest, limits, list(parts.values()))
        for scanner, future in futures.items():
            error = parts[scanner].error
            if error is not None:
                future.set_exception(_scanner_failed(scanner, digest, error))
                continue
            value = scans[scanner].result(report)
            if self._cache is not None:
                await self._cache.put(digest, *scanner.key, scanner.encode(value))
            future.set_result(value)


def _scanner_failed(scanner: LayerScanner[Any], digest: str, error: BaseException) -> VerifierError:
    """The error for a scanner that raised, without the exception's message: it may quote the
    file it was scanning, and a secret must not reach logs or the verdict."""
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error(
        "%s scanner failed on layer %s (%s):\n%s",
        scanner.name,
        digest,
        type(error).__name__,
        frames,
    )
    return VerifierError(f"{scanner.name} scanner failed on layer {digest}: {type(error).__name__}")
