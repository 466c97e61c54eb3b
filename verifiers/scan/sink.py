"""Where image inventories go: ``storage`` implements it, tests fake it.

A port, like ``LayerCache``: the verifier hands over a finished :class:`ImageInventory` and never
learns that it becomes rows of ``image_packages`` (STYLE: verifiers know nothing of SQL).
"""

from __future__ import annotations

from typing import Protocol

from verifiers.scan.model import ImageInventory


class InventorySink(Protocol):
    """Replaces the stored inventory of one image (idempotent: a re-scan overwrites)."""

    async def store(self, repository: str, digest: str, inventory: ImageInventory) -> None: ...
