"""Inputs for the layer-scanning verifiers' unit tests: an image over a fake blob store (the
advisory source held in memory is ``tests/fakes/advisories.py``)."""

from __future__ import annotations

from verifiers.base import BlobOpener, Descriptor, Image

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
