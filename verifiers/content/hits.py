"""What a content scanner keeps of one layer: hits (rule, path, redacted evidence), what it
could not inspect (counts by reason, and whether the read stopped early), and the layer's
whiteouts, cached as JSON by layer digest.

Hits are capped per rule and layer (:data:`MAX_HITS`); the rest are counted, so a layer of a
hundred thousand world-writable files is a handful of findings and a count, not a verdict too
large to store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_HITS = 20
"""Hits of one rule recorded one by one per layer; the rest are only counted."""


@dataclass(frozen=True)
class Hit:
    """One match in one layer."""

    rule_id: str
    path: str
    """Path in the layer (relative to the root), or ``""`` for the image config."""
    evidence: str = ""
    """Why, with any secret already redacted (see ``redact``)."""


@dataclass
class LayerHits:
    """One layer's result for one content scanner."""

    hits: list[Hit] = field(default_factory=list)
    overflow: dict[str, int] = field(default_factory=dict)
    """Hits per rule beyond :data:`MAX_HITS`, not recorded one by one."""
    not_inspected: dict[str, int] = field(default_factory=dict)
    """Files (or entries) the scanner could not inspect, by reason (``larger than
    max_hash_bytes``, the reader's ``UNREAD_*``): never a clean result for them."""
    stopped: str = ""
    """Rule id of the layer problem that ended the read early (``layer.truncated``), or
    ``""``: whatever followed it was not inspected, and not even counted."""
    whiteouts: list[str] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)
    _per_rule: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def add(self, rule_id: str, path: str, evidence: str = "") -> None:
        seen = self._per_rule.get(rule_id, 0) + 1
        self._per_rule[rule_id] = seen
        if seen <= MAX_HITS:
            self.hits.append(Hit(rule_id, path, evidence))
        else:
            self.overflow[rule_id] = seen - MAX_HITS

    def skip(self, reason: str, count: int = 1) -> None:
        """Count ``count`` files not inspected for ``reason``."""
        self.not_inspected[reason] = self.not_inspected.get(reason, 0) + count

    def to_json(self) -> dict[str, Any]:
        return {
            "hits": [[h.rule_id, h.path, h.evidence] for h in self.hits],
            "overflow": self.overflow,
            "not_inspected": self.not_inspected,
            "stopped": self.stopped,
            "whiteouts": self.whiteouts,
            "opaque": self.opaque,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LayerHits:
        return cls(
            hits=[Hit(str(r), str(p), str(e)) for r, p, e in data["hits"]],
            overflow={str(k): int(v) for k, v in data.get("overflow", {}).items()},
            not_inspected={str(k): int(v) for k, v in data.get("not_inspected", {}).items()},
            stopped=str(data.get("stopped", "")),
            whiteouts=[str(w) for w in data.get("whiteouts", [])],
            opaque=[str(o) for o in data.get("opaque", [])],
        )
