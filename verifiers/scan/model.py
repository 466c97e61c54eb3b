"""The values layer scanning produces: packages, the OS, and problems with hostile layers.

Frozen dataclasses, so a per-layer result can be cached (``to_json``/``from_json``) and shared
by every image containing the layer, and so storage and the SBOM exporter read the same shape
the verifier wrote.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Package:
    """One installed package, as its package database or metadata file records it."""

    ecosystem: str
    """The purl type: ``deb``, ``apk``, ``rpm``, ``pypi``, ``npm``, ``golang`` or ``maven``."""
    name: str
    """As the ecosystem's advisories name it: a Go module path (``stdlib`` for the toolchain),
    ``groupId:artifactId`` for Maven."""
    version: str
    """As the package database records it: RPM's ``[epoch:]version-release``, the Go
    toolchain's ``go1.19.8``."""
    path: str
    """File it was read from, relative to the image root (``var/lib/dpkg/status``)."""
    layer: str = ""
    """Digest of the layer holding that file."""
    source_name: str = ""
    """Source package (Debian ``Source:``, Alpine origin); Debian advisories are keyed by it."""
    source_version: str = ""
    """Source package version when it differs from ``version`` (binNMUs, Debian)."""
    arch: str = ""
    purl: str = ""
    """Package URL, set when the image's OS is known (it names the distro)."""

    def in_layer(self, digest: str) -> Package:
        return replace(self, layer=digest)


@dataclass(frozen=True)
class OsRelease:
    """The distribution named by ``etc/os-release`` (``ID``, ``VERSION_ID``, ...)."""

    id: str
    version_id: str = ""
    version_codename: str = ""
    pretty_name: str = ""
    path: str = ""
    layer: str = ""


@dataclass(frozen=True)
class Problem:
    """Something hostile or over a limit in a layer; becomes a finding of the verifier."""

    rule_id: str
    """``layer.path-traversal``, ``layer.compression-bomb``, ... (see ``rules``)."""
    detail: str
    path: str = ""
    count: int = 1
    """How many entries had this problem (only the first few are recorded one by one)."""


@dataclass(frozen=True)
class LayerInventory:
    """What one layer contributes; cached by layer digest and merged per image."""

    packages: tuple[Package, ...] = ()
    os_release: OsRelease | None = None
    whiteouts: tuple[str, ...] = ()
    """Paths this layer deletes from the layers below (``.wh.<name>``)."""
    opaque: tuple[str, ...] = ()
    """Directories whose lower contents this layer hides (``.wh..wh..opq``)."""
    present: tuple[str, ...] = ()
    """Package-database paths this layer (re)writes: they shadow the same path below."""
    problems: tuple[Problem, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerInventory:
        os_release = data.get("os_release")
        return cls(
            packages=tuple(Package(**p) for p in data.get("packages", ())),
            os_release=OsRelease(**os_release) if os_release else None,
            whiteouts=tuple(data.get("whiteouts", ())),
            opaque=tuple(data.get("opaque", ())),
            present=tuple(data.get("present", ())),
            problems=tuple(Problem(**p) for p in data.get("problems", ())),
        )


@dataclass(frozen=True)
class ImageInventory:
    """The final filesystem view of one image: what an SBOM lists and advisories match."""

    os_release: OsRelease | None
    packages: tuple[Package, ...] = field(default_factory=tuple)
