"""The catalogue of layer problems: one rule id per kind, with its severity.

One place, so policies and waivers can rely on stable ids, and a new check cannot invent a
severity ad hoc. Fatal problems stop reading the layer (its inventory is then incomplete).
"""

from __future__ import annotations

from dataclasses import dataclass

from verifiers.base import Severity


@dataclass(frozen=True)
class Rule:
    """A kind of problem a layer can have."""

    severity: Severity
    title: str
    fatal: bool = False
    """Reading stops: nothing after it in the layer can be trusted or is worth the time."""
    held: bool = False
    """About what the layer holds (a hostile entry), not about reading it failing: such a
    finding belongs to the blob wherever it is listed (``Finding.blob``). A read failure says
    nothing of a blob used as something other than a layer (an artifact's ``{}``), so it
    stays the manifest's."""


RULES: dict[str, Rule] = {
    "layer.path-traversal": Rule(Severity.HIGH, "tar entry escapes the root with '..'", held=True),
    "layer.absolute-path": Rule(Severity.HIGH, "tar entry has an absolute path", held=True),
    "layer.hardlink-outside": Rule(
        Severity.HIGH, "hard link to a file outside the layer", held=True
    ),
    # A device node is made by the runtime, never shipped: one in a layer opens the host's
    # device (a disk, /dev/mem) wherever the container may use devices.
    "layer.device-file": Rule(Severity.HIGH, "device file in a layer", held=True),
    "layer.path-too-long": Rule(Severity.MEDIUM, "tar entry path longer than the limit"),
    "layer.oversized-header": Rule(Severity.MEDIUM, "tar extended header larger than the limit"),
    "layer.file-too-large": Rule(Severity.INFO, "package database too large to read; skipped"),
    "layer.too-large": Rule(Severity.HIGH, "layer decompresses beyond the size limit", True),
    "layer.compression-bomb": Rule(Severity.HIGH, "layer compression ratio beyond the limit", True),
    "layer.too-many-entries": Rule(Severity.HIGH, "layer has more entries than the limit", True),
    "layer.truncated": Rule(Severity.HIGH, "layer ends in the middle of its data", True),
    "layer.corrupt": Rule(Severity.HIGH, "layer is not a valid (compressed) tar archive", True),
    "layer.timeout": Rule(Severity.HIGH, "reading the layer took longer than the limit", True),
}

MAX_RECORDED = 5
"""Problems of one rule recorded one by one per layer; the rest are only counted (a layer of a
million ``../`` entries is one finding with a count, not a million)."""
