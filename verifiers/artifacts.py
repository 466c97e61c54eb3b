"""Artifacts *about* an image (signatures, attestations, SBOMs, anything with a ``subject``).

They are stored beside images but are not images: checks meant for images (a sane config, a
signature) skip them, so that e.g. cosign's ``sha256-<hex>.sig`` manifest, whose config has an
empty ``os`` and ``architecture`` by design, stays pullable for ``cosign verify``.
"""

from __future__ import annotations

from verifiers.base import Image

ARTIFACT_LAYERS = frozenset(
    {
        "application/vnd.dev.cosign.simplesigning.v1+json",
        "application/vnd.dsse.envelope.v1+json",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "text/spdx",
        "text/spdx+json",
        "application/spdx+json",
        "application/vnd.cyclonedx+json",
        "application/vnd.cyclonedx+xml",
        "application/vnd.syft+json",
    }
)
"""Layer types of signatures, attestations and SBOMs."""


def artifact_reason(image: Image) -> str | None:
    """Why ``image`` is an artifact about another image, or None if it is an image."""
    subject = image.manifest.get("subject")
    if isinstance(subject, dict):
        return f"an artifact attached to {subject.get('digest')}, not an image"
    if image.layers and all(layer.media_type in ARTIFACT_LAYERS for layer in image.layers):
        return "a signature, attestation or SBOM artifact, not an image"
    return None
