"""The ``inventory`` verifier: every layer read once, merged into the image's package inventory.

Its findings are only about hostile layers (traversal, bombs, limits); the inventory itself goes
to the :class:`InventorySink`, where the vulnerability matcher and ``gatekeeper sbom`` read it.
Per-layer partials are cached by layer digest, so a base layer shared by a thousand images is
read once; the cache key's version includes the limits, since other limits can give other
results.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from verifiers.artifacts import artifact_reason
from verifiers.base import BlobOpener, Descriptor, Finding, Image, Skipped
from verifiers.layers import LayerCache
from verifiers.scan.inventory import merge, scan_layer
from verifiers.scan.limits import ScanLimits
from verifiers.scan.model import LayerInventory, Problem
from verifiers.scan.rules import RULES
from verifiers.scan.sink import InventorySink
from verifiers.stores import Stores

log = logging.getLogger("gatekeeper.scan")

NAME = "inventory"
SCHEMA = "1"
"""Bumped when parsing changes what a layer yields (so cached partials are not reused)."""


class InventoryVerifier:
    """Builds the package inventory of an image and reports hostile layers."""

    name = NAME

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.limits = ScanLimits.model_validate(options or {})
        self.version = f"{SCHEMA}.{self.limits.fingerprint()}"
        self._cache: LayerCache | None = None
        self._sink: InventorySink | None = None
        self._inflight: dict[str, asyncio.Future[LayerInventory]] = {}

    def attach(self, stores: Stores) -> None:
        self._cache = stores.layer_cache
        self._sink = stores.inventory
        self._inflight = stores.inflight

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
            for layer, partial in zip(image.layers, partials, strict=True)
            for problem in partial.problems
        ]

    async def partials(self, image: Image) -> list[LayerInventory] | Skipped:
        """Each layer's inventory (from the layer cache when there), or why none applies.

        Also used by the ``vulnerabilities`` verifier, which runs concurrently in the same
        pipeline: the in-flight map of :class:`Stores` makes the two share one read per layer.
        """
        if image.children:
            return Skipped("an image index has no layers; its platform images are scanned")
        if image.config is None:
            return Skipped("not a container image (artifact or non-JSON config)")
        reason = artifact_reason(image)
        if reason:
            return Skipped(reason)
        return [await self._shared(layer, image.blobs) for layer in image.layers]

    async def _shared(self, layer: Descriptor, blobs: BlobOpener) -> LayerInventory:
        """Single flight per (layer, version): a second caller awaits the first one's read."""
        key = f"{layer.digest}/{self.version}"
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        task = asyncio.ensure_future(self._layer(layer, blobs))
        self._inflight[key] = task
        # dropped when done, even if every waiter was cancelled: a failed read is not reused
        task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _layer(self, layer: Descriptor, blobs: BlobOpener) -> LayerInventory:
        cache = self._cache
        if cache is not None:
            cached = await cache.get(layer.digest, self.name, self.version)
            if cached is not None:
                return LayerInventory.from_json(cached)
        partial = await scan_layer(blobs, layer.digest, self.limits)
        if cache is not None:
            await cache.put(layer.digest, self.name, self.version, partial.to_json())
        return partial

    def _finding(self, layer: str, problem: Problem) -> Finding:
        rule = RULES[problem.rule_id]
        location = f"{layer}:{problem.path}" if problem.path else layer
        return Finding(
            self.name, problem.rule_id, rule.severity, rule.title, location, problem.detail
        )
