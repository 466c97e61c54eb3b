"""Per-layer partial inventories, and their merge into the image's inventory.

A layer is read once and reduced to a :class:`LayerInventory` (its packages, OS release,
whiteouts and the package-database paths it writes), which is cached by layer digest. An image's
inventory is the merge of its layers' partials under ``filesystem`` rules, with purls added last
because a Debian purl names the distro, which may come from another layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from packageurl import PackageURL

from verifiers.base import BlobOpener
from verifiers.scan.ecosystems import (
    Ecosystem,
    apk,
    dpkg,
    golang,
    java,
    npm,
    osrelease,
    python,
    rpm,
)
from verifiers.scan.ecosystems.golang_stream import BuildInfoSearch
from verifiers.scan.filesystem import Changes, apply_layers
from verifiers.scan.limits import ScanLimits
from verifiers.scan.model import ImageInventory, LayerInventory, OsRelease, Package
from verifiers.scan.reader import ChunkSink, LayerReport, read_layer
from verifiers.scan.tarstream import Entry

log = logging.getLogger("gatekeeper.scan")

ECOSYSTEMS: tuple[Ecosystem, ...] = (
    dpkg.ECOSYSTEM,
    apk.ECOSYSTEM,
    rpm.ECOSYSTEM,
    python.ECOSYSTEM,
    npm.ECOSYSTEM,
    java.ECOSYSTEM,
    golang.ECOSYSTEM,
)


class StreamParser(Protocol):
    """An ecosystem's parser for a file fed in chunks (one too large to read whole)."""

    def feed(self, chunk: bytes) -> None: ...

    def packages(self, path: str) -> list[Package]: ...


STREAMING: Mapping[Ecosystem, Callable[[], StreamParser]] = {golang.ECOSYSTEM: BuildInfoSearch}
"""Ecosystems that can parse a file as a stream, so no file of theirs is too large."""


class Collector:
    """The reader's visitor: routes each package database to its ecosystem's parser.

    A wanted file larger than ``max_file_bytes`` (default: the default limit) is taken as a
    stream (:meth:`stream`) when every ecosystem that chose it can parse one (Go build info,
    see :data:`STREAMING`), and is otherwise a ``layer.file-too-large`` problem of the reader.
    Files only chosen by tar metadata (any executable may be a Go binary) are not asked for
    when they are too large and no chosen ecosystem streams: most large executables are not
    Go programs, and each would be a problem.
    """

    def __init__(
        self,
        ecosystems: Sequence[Ecosystem] = ECOSYSTEMS,
        max_file_bytes: int | None = None,
        streaming: Mapping[Ecosystem, Callable[[], StreamParser]] = STREAMING,
    ) -> None:
        self.ecosystems = ecosystems
        self.max_file_bytes = max_file_bytes or ScanLimits().max_file_bytes
        self.streaming = streaming
        self.packages: list[Package] = []
        self.os_releases: list[OsRelease] = []
        self.present: list[str] = []
        self._chosen: tuple[str, list[Ecosystem]] = ("", [])

    def wants(self, path: str, entry: Entry) -> bool:
        if osrelease.matches(path):
            self._chosen = (path, [])
            return True
        chosen = [e for e in self.ecosystems if e.matches(path) or self._selects(e, path, entry)]
        self._chosen = (path, chosen)
        return bool(chosen)

    def _selects(self, ecosystem: Ecosystem, path: str, entry: Entry) -> bool:
        if ecosystem.selects is None or not ecosystem.selects(path, entry):
            return False
        return entry.size <= self.max_file_bytes or ecosystem in self.streaming

    def stream(self, path: str, entry: Entry) -> ChunkSink | None:
        """A sink for a file over ``max_file_bytes``, if every ecosystem that chose it streams;
        else None (the reader records the file as too large)."""
        chosen_path, chosen = self._chosen
        if chosen_path != path or not chosen or any(e not in self.streaming for e in chosen):
            return None
        return _Streamed(self, path, [self.streaming[e]() for e in chosen])

    def visit(self, path: str, data: bytes) -> None:
        chosen_path, chosen = self._chosen
        if chosen_path != path:  # called without ``wants`` (tests): route by path alone
            chosen = [e for e in self.ecosystems if e.matches(path)]
        self.present.append(path)
        try:
            if osrelease.matches(path):
                found = osrelease.parse(path, data)
                self.os_releases.extend([found] if found else [])
                return
            for ecosystem in chosen:
                self.packages.extend(ecosystem.parse(path, data))
        except Exception:  # a parser bug on odd data must not lose the rest of the layer
            log.exception("cannot parse %s; skipped", path)


class _Streamed:
    """One streamed file: chunks to its parsers; at the end, their packages to the collector,
    as :meth:`Collector.visit` would have added them (a parser that fails is logged, dropped)."""

    def __init__(self, collector: Collector, path: str, parsers: list[StreamParser]) -> None:
        self.collector = collector
        self.path = path
        self.parsers = parsers

    def feed(self, chunk: bytes) -> None:
        for parser in list(self.parsers):
            try:
                parser.feed(chunk)
            except Exception:  # as in ``Collector.visit``: a parser bug costs one file only
                log.exception("cannot parse %s; skipped", self.path)
                self.parsers.remove(parser)

    def close(self) -> None:
        self.collector.present.append(self.path)
        for parser in self.parsers:
            try:
                self.collector.packages.extend(parser.packages(self.path))
            except Exception:
                log.exception("cannot parse %s; skipped", self.path)


async def scan_layer(blobs: BlobOpener, digest: str, limits: ScanLimits) -> LayerInventory:
    """Read one layer and reduce it to what the image-level merge needs."""
    collector = Collector(max_file_bytes=limits.max_file_bytes)
    report = await read_layer(blobs, digest, limits, collector)
    return layer_inventory(digest, collector, report)


def layer_inventory(digest: str, collector: Collector, report: LayerReport) -> LayerInventory:
    """What one read of layer ``digest`` leaves for the merge: the collector's packages and
    OS release, the reader's whiteouts and problems."""
    return LayerInventory(
        packages=tuple(p.in_layer(digest) for p in collector.packages),
        os_release=_preferred(replace(o, layer=digest) for o in collector.os_releases),
        whiteouts=tuple(report.whiteouts),
        opaque=tuple(report.opaque),
        present=tuple(collector.present),
        problems=tuple(report.problems),
    )


def _preferred(releases: Iterable[OsRelease]) -> OsRelease | None:
    return min(releases, key=lambda o: osrelease.PATHS.index(o.path), default=None)


def merge(layers: Sequence[LayerInventory]) -> ImageInventory:
    """The final view of an image whose layers are ``layers``, bottom first."""
    changes = [Changes.of(li.whiteouts, li.opaque, li.present) for li in layers]
    packages = apply_layers(
        [(c, li.packages) for c, li in zip(changes, layers, strict=True)], lambda p: p.path
    )
    releases = apply_layers(
        [
            (c, (li.os_release,) if li.os_release else ())
            for c, li in zip(changes, layers, strict=True)
        ],
        lambda o: o.path,
    )
    os_release = _preferred(releases)
    return ImageInventory(
        os_release=os_release,
        packages=tuple(replace(p, purl=purl(p, os_release)) for p in packages),
    )


def purl(package: Package, os_release: OsRelease | None) -> str:
    """The package URL, in the form syft and OSV use."""
    if package.ecosystem in ("deb", "apk", "rpm"):
        return _os_purl(package, os_release)
    namespace: str | None = None
    name, version = package.name, package.version
    if package.ecosystem == "npm" and name.startswith("@") and "/" in name:
        namespace, _, name = name.partition("/")
    elif package.ecosystem == "maven":
        namespace, _, name = name.rpartition(":")
    elif package.ecosystem == "golang":
        namespace, _, name = name.rpartition("/")
        if package.name == "stdlib":
            version = version.removeprefix("go")  # toolchain go1.19.8 is stdlib 1.19.8
    return str(
        PackageURL(type=package.ecosystem, namespace=namespace or None, name=name, version=version)
    )


def _os_purl(package: Package, os_release: OsRelease | None) -> str:
    """``pkg:deb/debian/...``: the distro is the namespace and the ``distro`` qualifier.

    RPM follows syft: the version is ``version-release`` with the epoch as a qualifier and the
    source RPM as ``upstream``."""
    default = {"deb": "debian", "apk": "alpine"}.get(package.ecosystem)
    namespace = os_release.id if os_release else default
    version = package.version
    qualifiers: dict[str, str] = {}
    if package.arch:
        qualifiers["arch"] = package.arch
    if package.ecosystem == "rpm":
        epoch, colon, rest = version.partition(":")
        if colon and epoch.isdigit():
            qualifiers["epoch"], version = epoch, rest
        if package.source_name and package.source_version:
            qualifiers["upstream"] = f"{package.source_name}-{package.source_version}.src.rpm"
    if os_release and os_release.version_id:
        qualifiers["distro"] = f"{os_release.id}-{os_release.version_id}"
    return str(
        PackageURL(
            type=package.ecosystem,
            namespace=namespace,
            name=package.name,
            version=version,
            qualifiers=qualifiers or None,
        )
    )
