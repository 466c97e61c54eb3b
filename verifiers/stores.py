"""The storage ports a verifier may use, lent to it after construction.

Verifiers are built from options alone (``factory(options)``, the plugin contract); one that
needs storage implements :class:`UsesStores` and the registry calls ``attach`` with the ports.
No verifier sees a database; each port is a small protocol implemented in ``storage``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from verifiers.layers import LayerCache
from verifiers.scan.sink import InventorySink
from verifiers.vulns.source import AdvisorySource


@dataclass(frozen=True)
class Stores:
    """Ports into storage; a port that is None is not available in this process."""

    layer_cache: LayerCache
    inventory: InventorySink | None = None
    advisories: AdvisorySource | None = None
    inflight: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    """Layer reads in progress, shared by the verifiers of one process (``inventory`` and
    ``vulnerabilities`` read the same layers concurrently; one read serves both)."""


@runtime_checkable
class UsesStores(Protocol):
    """A verifier that needs storage ports."""

    def attach(self, stores: Stores) -> None: ...
