"""Per-layer verifiers and the cache that makes each layer be read once.

Many images share layers (a base image under every service). A :class:`LayerVerifier` checks
one layer at a time; :class:`PerLayer` adapts it to the image-level protocol and consults a
:class:`LayerCache` keyed by (layer digest, verifier, version), so a shared layer is fetched and
scanned once however many images contain it.
"""

from __future__ import annotations

from typing import Any, Protocol

from verifiers.base import BlobOpener, Descriptor, Finding, Image, Severity, Skipped


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
        if not image.layers:
            return Skipped("no layers")
        findings: list[Finding] = []
        for layer in image.layers:
            cached = await self.cache.get(layer.digest, self.name, self.version)
            if cached is None:
                result = await self.inner.verify_layer(layer, image.blobs)
                await self.cache.put(layer.digest, self.name, self.version, _encode(result))
            else:
                result = _decode(self.name, cached)
            if not isinstance(result, Skipped):
                findings.extend(result)
        return findings
