"""The storage ports a verifier may use, lent to it after construction.

Verifiers are built from options alone (``factory(options)``, the plugin contract); one that
needs storage implements :class:`UsesStores` and the registry calls ``attach`` with the ports.
No verifier sees a database; each port is a small protocol implemented in ``storage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from verifiers.layers import LayerCache, LayerReads
from verifiers.scan.sink import InventorySink
from verifiers.vulns.source import AdvisorySource


@dataclass(frozen=True)
class Stores:
    """Ports into storage; a port that is None is not available in this process."""

    layer_cache: LayerCache
    inventory: InventorySink | None = None
    advisories: AdvisorySource | None = None
    reads: LayerReads = field(init=False, repr=False, compare=False)
    """The process's shared layer reads over ``layer_cache``: every layer verifier registers
    its scanner here, and one read of a layer serves them all (``inventory``,
    ``vulnerabilities``, ``secrets``, ``malware``, ``hardening``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reads", LayerReads(self.layer_cache))


@runtime_checkable
class UsesStores(Protocol):
    """A verifier that needs storage ports."""

    def attach(self, stores: Stores) -> None: ...
