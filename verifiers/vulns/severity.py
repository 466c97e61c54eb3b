"""A record's severity: its CVSS v3 vector scored, else the database's label, else MEDIUM.

OSV stores the vector, not the score, so the score is computed here (``cvss``). Databases that
publish no vector (the Go database) sometimes put a label in ``database_specific.severity``.
MEDIUM when neither is present: an advisory with no stated severity is not harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cvss import CVSS3

from verifiers.base import Severity

DEFAULT = Severity.MEDIUM


@dataclass(frozen=True)
class Scored:
    severity: Severity
    score: float | None
    """CVSS v3 base score when a vector was scored."""
    source: str
    """``cvss``, ``label`` or ``default``: how the severity was chosen."""


def score(record: dict[str, Any]) -> Scored:
    """Severity of one OSV record, from its top-level or per-package ``severity`` entries."""
    vectors = [s.get("score", "") for s in _severity_entries(record) if s.get("type") == "CVSS_V3"]
    for vector in vectors:
        try:
            base = float(CVSS3(vector).scores()[0])
        except Exception:  # cvss raises its own CVSS3Error tree; a bad vector is skipped
            continue
        return Scored(_from_score(base), base, "cvss")
    label = _label(record)
    if label is not None:
        return Scored(label, None, "label")
    return Scored(DEFAULT, None, "default")


def _severity_entries(record: dict[str, Any]) -> list[dict[str, Any]]:
    entries = list(record.get("severity") or ())
    for affected in record.get("affected") or ():
        entries += affected.get("severity") or ()
    return [e for e in entries if isinstance(e, dict)]


def _label(record: dict[str, Any]) -> Severity | None:
    specific = [record.get("database_specific") or {}]
    specific += [a.get("database_specific") or {} for a in record.get("affected") or ()]
    for block in specific:
        text = block.get("severity") if isinstance(block, dict) else None
        if isinstance(text, str):
            try:
                return Severity.parse("medium" if text.strip().lower() == "moderate" else text)
            except ValueError:
                continue
    return None


def _from_score(base: float) -> Severity:
    """CVSS v3 qualitative ratings (0.1-3.9 low, 4-6.9 medium, 7-8.9 high, 9+ critical)."""
    if base >= 9.0:
        return Severity.CRITICAL
    if base >= 7.0:
        return Severity.HIGH
    if base >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW if base > 0 else Severity.INFO
