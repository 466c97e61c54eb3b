"""What the three content verifiers share: options that include the layer-read limits, the
registration of their per-layer scanner, the accounting of what a scan could not inspect, and
the turning of cached hits into findings.

What a scanner could not inspect is a finding of its own verifier (``*.not-inspected``, HIGH,
so blocking at the default threshold): an entry the reader passed over (a path over
``max_path_length``, behind an oversized header), a file over what the scanner can take, a read
that stopped early. A secrets scan that did not read a file cannot say it holds no secret.

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
from verifiers.scan.reader import LayerReport
from verifiers.scan.rules import RULES as LAYER_RULES
from verifiers.stores import Stores


def limits_of(options: ScanLimits) -> ScanLimits:
    """The plain read limits inside a verifier's options (a subclass of them)."""
    return ScanLimits.model_validate(options.model_dump(include=set(ScanLimits.model_fields)))


def fingerprint(*parts: Any) -> str:
    """Short hash of JSON-able values: a cached result is reused only under the same inputs."""
    canonical = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()[:12]


class ContentScan(LayerScan[LayerHits]):
    """A content scanner's state over one layer read: its hits, and, once the read is over,
    what the reader showed it nothing of (:meth:`unseen`) and whether the read stopped early."""

    def __init__(self) -> None:
        self.hits = LayerHits()

    def unseen(self, report: LayerReport) -> dict[str, int]:
        """Entries of the layer this scan did not inspect, by reason: by default every one
        the reader showed no visitor the data of (``LayerReport.unread``)."""
        return report.unread

    def result(self, report: LayerReport) -> LayerHits:
        for reason, count in self.unseen(report).items():
            self.hits.skip(reason, count)
        self.hits.stopped = report.stopped
        return self.hits


def not_inspected(result: LayerHits) -> str:
    """The evidence of a ``*.not-inspected`` finding: how many, why, and where a read stopped;
    ``""`` when the scan inspected everything."""
    total = sum(result.not_inspected.values())
    counts = ", ".join(f"{n} {why}" for why, n in sorted(result.not_inspected.items()))
    parts = [f"{total} not inspected: {counts}"] if total else []
    if result.stopped:
        rule = LAYER_RULES.get(result.stopped)
        what = f"{result.stopped}: {rule.title}" if rule else result.stopped
        parts.append(f"the read stopped early ({what}), nothing after it was inspected")
    return "; ".join(parts)


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
        self, image: Image, results: Sequence[LayerHits], not_inspected_rule: str
    ) -> list[Finding]:
        """Every hit as a finding at ``layer:path``, one finding per rule for hits beyond the
        cap, and :meth:`not_inspected_findings`."""
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
        return findings + self.not_inspected_findings(image, results, not_inspected_rule)

    def not_inspected_findings(
        self, image: Image, results: Sequence[LayerHits], rule_id: str
    ) -> list[Finding]:
        """One ``rule_id`` finding per layer the scan did not wholly inspect. It is about this
        manifest's use of the blob, not about what the blob holds (``blob`` None): a blob that
        is not a tar at all (an artifact's ``{}``) listed as a layer reads as unreadable, and
        must not be marked wherever else it is used."""
        findings: list[Finding] = []
        for layer, result in zip(distinct_layers(image.layers), results, strict=True):
            evidence = not_inspected(result)
            if evidence:
                findings.append(self.finding(rule_id, layer.digest, evidence, blob=None))
        return findings
