"""Inputs for the layer-scanning verifiers' unit tests: an image over a fake blob store, and an
advisory source held in memory."""

from __future__ import annotations

from verifiers.base import BlobOpener, Descriptor, Image
from verifiers.vulns.ecosystems import normalize
from verifiers.vulns.osv import Advisory

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def image(blobs: BlobOpener, digest: str, layers: list[str]) -> Image:
    """A linux image ``team/app@digest`` whose gzip'd layers ``layers`` are read from ``blobs``."""
    return Image(
        repository="team/app",
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        manifest={},
        config={"os": "linux"},
        layers=tuple(Descriptor(LAYER, d, 1) for d in layers),
        children=(),
        blobs=blobs,
    )


class MemoryAdvisories:
    """A fake of the AdvisorySource port."""

    def __init__(self, *advisories: Advisory, version: int = 7) -> None:
        self.advisories = list(advisories)
        self.version = version

    async def for_package(self, ecosystem: str, name: str) -> list[Advisory]:
        return [
            a
            for a in self.advisories
            if any(
                x.ecosystem == ecosystem and normalize(ecosystem, x.name) == name
                for x in a.affected
            )
        ]

    async def data_version(self) -> int:
        return self.version
