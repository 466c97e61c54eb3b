"""What the three content verifiers share: options that include the layer-read limits, the
registration of their per-layer scanner, and the turning of cached hits into findings.

Their options extend :class:`~verifiers.scan.limits.ScanLimits`: the layer-level limits
(size, ratio, entries, time) decide which verifiers share a read (give them the same values as
``[verifiers.inventory.options]``, or leave all at their defaults), and ``max_file_bytes`` is
each scanner's own limit on one file read into memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from verifiers.base import Finding, Image
from verifiers.content.hits import LayerHits
from verifiers.content.rules import rule_for
from verifiers.layers import LayerReads, LayerScan, LayerScanner, distinct_layers
from verifiers.scan.limits import ScanLimits
from verifiers.stores import Stores


def limits_of(options: ScanLimits) -> ScanLimits:
    """The plain read limits inside a verifier's options (a subclass of them)."""
    return ScanLimits.model_validate(options.model_dump(include=set(ScanLimits.model_fields)))


def fingerprint(*parts: Any) -> str:
    """Short hash of JSON-able values: a cached result is reused only under the same inputs."""
    canonical = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()[:12]


def hits_scanner(
    name: str, version: str, limits: ScanLimits, start: Callable[[str], LayerScan[LayerHits]]
) -> LayerScanner[LayerHits]:
    return LayerScanner(
        name=name,
        version=version,
        limits=limits,
        start=start,
        encode=LayerHits.to_json,
        decode=LayerHits.from_json,
    )


class LayerContentVerifier:
    """Base of a verifier whose evidence is one :class:`LayerHits` per layer."""

    name: str
    version: str

    def __init__(self, scanner: LayerScanner[LayerHits]) -> None:
        self.scanner = scanner
        self._reads = LayerReads(None)

    def attach(self, stores: Stores) -> None:
        self._reads = stores.reads
        self._reads.register(self.scanner)

    async def layer_hits(self, image: Image) -> list[LayerHits]:
        """The hits of each of ``distinct_layers(image.layers)``, in that order."""
        return [
            await self._reads.result(self.scanner, layer.digest, image.blobs)
            for layer in distinct_layers(image.layers)
        ]

    def finding(
        self, rule_id: str, location: str, evidence: str = "", title: str = "", *, blob: str | None
    ) -> Finding:
        """A finding of rule ``rule_id``; ``blob`` is the layer or config that carries it."""
        rule = rule_for(rule_id)
        return Finding(
            self.name, rule_id, rule.severity, title or rule.title, location, evidence, blob=blob
        )

    def layer_findings(
        self, image: Image, results: Sequence[LayerHits], skipped_rule: str
    ) -> list[Finding]:
        """Every hit as a finding at ``layer:path``, one finding per rule for hits beyond the
        cap, and one INFO finding per layer that says how many files were not scanned."""
        findings: list[Finding] = []
        for layer, result in zip(distinct_layers(image.layers), results, strict=True):
            at = layer.digest
            findings += (
                self.finding(h.rule_id, f"{at}:{h.path}", h.evidence, blob=at) for h in result.hits
            )
            findings += (
                self.finding(rule, at, f"and {more} more in this layer", blob=at)
                for rule, more in sorted(result.overflow.items())
            )
            if result.skipped:
                counts = ", ".join(f"{n} {why}" for why, n in sorted(result.skipped.items()))
                findings.append(self.finding(skipped_rule, at, counts, blob=at))
        return findings
