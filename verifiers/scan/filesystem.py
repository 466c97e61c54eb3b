"""OCI layer semantics: what of a lower layer is still visible once the layers above apply.

A later layer hides a lower path when it whites it out (``.wh.<name>``, which also hides
everything below a whited-out directory), marks an ancestor directory opaque
(``.wh..wh..opq``), or writes the same path again. Inventories are merged with these rules so a
package database deleted or replaced by a later layer no longer counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Changes:
    """What one layer does to the paths of the layers below it."""

    whiteouts: frozenset[str] = frozenset()
    opaque: frozenset[str] = frozenset()
    written: frozenset[str] = frozenset()

    @classmethod
    def of(cls, whiteouts: Iterable[str], opaque: Iterable[str], written: Iterable[str]) -> Changes:
        return cls(frozenset(whiteouts), frozenset(opaque), frozenset(written))

    def hides(self, path: str) -> bool:
        """True when ``path`` of a lower layer is no longer visible above this layer."""
        if path in self.whiteouts or path in self.written:
            return True
        parent = path
        while "/" in parent:
            parent = parent.rpartition("/")[0]
            if parent in self.whiteouts or parent in self.opaque:
                return True
        return "" in self.opaque  # an opaque root hides everything below


def apply_layers(
    layers: Sequence[tuple[Changes, Sequence[T]]], path_of: Callable[[T], str]
) -> list[T]:
    """Items visible in the final filesystem, bottom layer first in ``layers``."""
    visible: list[T] = []
    for changes, items in layers:
        if changes.whiteouts or changes.opaque or changes.written:
            visible = [item for item in visible if not changes.hides(path_of(item))]
        visible.extend(items)
    return visible
