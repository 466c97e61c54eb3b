"""Per-layer partial inventories, and their merge into the image's inventory.

A layer is read once and reduced to a :class:`LayerInventory` (its packages, OS release,
whiteouts and the package-database paths it writes), which is cached by layer digest. An image's
inventory is the merge of its layers' partials under ``filesystem`` rules, with purls added last
because a Debian purl names the distro, which may come from another layer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace

from packageurl import PackageURL

from verifiers.base import BlobOpener
from verifiers.scan.ecosystems import Ecosystem, apk, dpkg, npm, osrelease, python
from verifiers.scan.filesystem import Changes, apply_layers
from verifiers.scan.limits import ScanLimits
from verifiers.scan.model import ImageInventory, LayerInventory, OsRelease, Package
from verifiers.scan.reader import read_layer
from verifiers.scan.tarstream import Entry

log = logging.getLogger("gatekeeper.scan")

ECOSYSTEMS: tuple[Ecosystem, ...] = (dpkg.ECOSYSTEM, apk.ECOSYSTEM, python.ECOSYSTEM, npm.ECOSYSTEM)


class Collector:
    """The reader's visitor: routes each package database to its ecosystem's parser."""

    def __init__(self, ecosystems: Sequence[Ecosystem] = ECOSYSTEMS) -> None:
        self.ecosystems = ecosystems
        self.packages: list[Package] = []
        self.os_releases: list[OsRelease] = []
        self.present: list[str] = []

    def wants(self, path: str, entry: Entry) -> bool:
        return osrelease.matches(path) or any(e.matches(path) for e in self.ecosystems)

    def visit(self, path: str, data: bytes) -> None:
        self.present.append(path)
        try:
            if osrelease.matches(path):
                found = osrelease.parse(path, data)
                self.os_releases.extend([found] if found else [])
                return
            for ecosystem in self.ecosystems:
                if ecosystem.matches(path):
                    self.packages.extend(ecosystem.parse(path, data))
        except Exception:  # a parser bug on odd data must not lose the rest of the layer
            log.exception("cannot parse %s; skipped", path)


async def scan_layer(blobs: BlobOpener, digest: str, limits: ScanLimits) -> LayerInventory:
    """Read one layer and reduce it to what the image-level merge needs."""
    collector = Collector()
    report = await read_layer(blobs, digest, limits, collector)
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
    qualifiers: dict[str, str] = {}
    namespace: str | None = None
    name = package.name
    if package.ecosystem in ("deb", "apk"):
        namespace = (
            os_release.id if os_release else ("debian" if package.ecosystem == "deb" else "alpine")
        )
        if package.arch:
            qualifiers["arch"] = package.arch
        if os_release and os_release.version_id:
            qualifiers["distro"] = f"{os_release.id}-{os_release.version_id}"
    elif package.ecosystem == "npm" and name.startswith("@") and "/" in name:
        namespace, _, name = name.partition("/")
    return str(
        PackageURL(
            type=package.ecosystem,
            namespace=namespace,
            name=name,
            version=package.version,
            qualifiers=qualifiers or None,
        )
    )
