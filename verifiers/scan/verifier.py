"""The ``inventory`` verifier: every layer read once, merged into the image's package inventory.

Its findings are only about hostile layers (traversal, bombs, limits); the inventory itself goes
to the :class:`InventorySink`, where the vulnerability matcher and ``gatekeeper sbom`` read it.
Per-layer partials are cached by layer digest, so a base layer shared by a thousand images is
read once; the cache key's version includes the limits, since other limits can give other
results. Reads go through the process's shared :class:`~verifiers.layers.LayerReads`, so the
same read also serves ``vulnerabilities`` and the content checks.
"""

from __future__ import annotations

import logging
from typing import Any

from verifiers.base import Finding, Image, Skipped, index_skip
from verifiers.layers import LayerReads, LayerScan, LayerScanner, distinct_layers
from verifiers.scan.inventory import Collector, layer_inventory, merge
from verifiers.scan.limits import ScanLimits
from verifiers.scan.model import LayerInventory, Problem
from verifiers.scan.reader import ChunkSink, LayerReport, record_too_large
from verifiers.scan.rules import RULES
from verifiers.scan.sink import InventorySink
from verifiers.scan.tarstream import Entry
from verifiers.stores import Stores

log = logging.getLogger("gatekeeper.scan")

NAME = "inventory"
SCHEMA = "3"
"""Bumped when parsing changes what a layer yields (so cached partials are not reused).
3: Go binaries over ``max_file_bytes`` are inventoried (streamed) instead of passed over."""


class InventoryScan(LayerScan[LayerInventory]):
    """The inventory's part of a shared layer read: package databases to a partial inventory
    (``inventory.scan_layer`` is the same for a read of its own)."""

    def __init__(self, digest: str, max_file_bytes: int) -> None:
        self.digest = digest
        self.collector = Collector(max_file_bytes=max_file_bytes)

    def wants(self, path: str, entry: Entry) -> bool:
        return self.collector.wants(path, entry)

    def visit(self, path: str, data: bytes) -> None:
        self.collector.visit(path, data)

    def stream(self, path: str, entry: Entry) -> ChunkSink | None:
        return self.collector.stream(path, entry)

    def too_large(self, path: str, entry: Entry, report: LayerReport) -> None:
        record_too_large(path, entry, report)

    def result(self, report: LayerReport) -> LayerInventory:
        return layer_inventory(self.digest, self.collector, report)


def inventory_scanner(limits: ScanLimits) -> LayerScanner[LayerInventory]:
    """The per-layer inventory scan under ``limits``, as registered by every verifier that
    needs inventories (``inventory``, ``vulnerabilities``, ``hardening``)."""
    return LayerScanner(
        name=NAME,
        version=f"{SCHEMA}.{limits.fingerprint()}",
        limits=limits,
        start=lambda digest: InventoryScan(digest, limits.max_file_bytes),
        encode=LayerInventory.to_json,
        decode=LayerInventory.from_json,
    )


class InventoryVerifier:
    """Builds the package inventory of an image and reports hostile layers."""

    name = NAME

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.limits = ScanLimits.model_validate(options or {})
        self.scanner = inventory_scanner(self.limits)
        self.version = self.scanner.version
        self._reads = LayerReads(None)
        self._sink: InventorySink | None = None

    def attach(self, stores: Stores) -> None:
        self._reads = stores.reads
        self._reads.register(self.scanner)
        self._sink = stores.inventory

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        partials = await self.partials(image)
        if isinstance(partials, Skipped):
            return partials
        if self._sink is not None:
            await self._sink.store(image.repository, image.digest, merge(partials))
        else:
            log.warning("no inventory store attached: inventory of %s not kept", image.digest)
        return [
            self._finding(layer.digest, problem)
            for layer, partial in zip(distinct_layers(image.layers), partials, strict=True)
            for problem in partial.problems
        ]

    async def partials(self, image: Image) -> list[LayerInventory] | Skipped:
        """The inventory of each of ``distinct_layers(image.layers)`` (from the layer cache
        when there), or why none applies.

        Also used by the ``vulnerabilities`` and ``hardening`` verifiers, which run
        concurrently in the same pipeline: the shared :class:`LayerReads` of :class:`Stores`
        makes them share one read per layer.
        """
        skipped = index_skip(image)
        if skipped:
            return skipped
        return [
            await self._reads.result(self.scanner, layer.digest, image.blobs)
            for layer in distinct_layers(image.layers)
        ]

    def _finding(self, layer: str, problem: Problem) -> Finding:
        rule = RULES[problem.rule_id]
        location = f"{layer}:{problem.path}" if problem.path else layer
        return Finding(
            self.name,
            problem.rule_id,
            rule.severity,
            rule.title,
            location,
            problem.detail,
            blob=layer if rule.held else None,
        )
