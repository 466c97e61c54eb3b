"""A stored verdict back into the values the policy decides on, so it can be decided again
without running any verifier: its outcomes (as JSON on the verdict) with their findings (rows).

Used by re-evaluation (``proxy.reevaluate``) and the policy dry-run (``proxy.admin.policy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage.verdicts import FindingRecord, VerdictView
from verifiers.base import Finding, Severity
from verifiers.pipeline import Outcome

PARSED_LIMIT = 100_000
"""Stored findings kept parsed in one cache (one policy re-evaluation)."""


class StoredDataError(ValueError):
    """A stored verdict's outcomes or findings cannot be read back (written by an older
    version, or edited by hand); that verdict is skipped, not guessed at."""


def rebuild_outcomes(
    verdict: VerdictView,
    findings: Sequence[FindingRecord],
    replace: Outcome | None = None,
    parsed: dict[FindingRecord, Finding] | None = None,
) -> list[Outcome]:
    """The pipeline's outcomes as they were when ``verdict`` was decided; ``replace`` stands in
    for the stored outcome of the same verifier (with its findings). ``parsed`` caches findings
    across images (many share findings of a common base layer)."""
    by_verifier: dict[str, list[Finding]] = {}
    cache = {} if parsed is None else parsed
    for f in findings:
        if replace is not None and f.verifier == replace.verifier:
            continue  # stands in for them
        finding = cache.get(f)
        if finding is None:
            if len(cache) >= PARSED_LIMIT:
                cache.clear()  # a fleet of all-different findings: bound the memory, not the work
            finding = cache[f] = _finding(f)
        by_verifier.setdefault(f.verifier, []).append(finding)
    outcomes = []
    for stored in verdict.outcomes:
        try:
            name, status = str(stored["verifier"]), stored["status"]
        except (KeyError, TypeError) as exc:
            raise StoredDataError(f"outcome without verifier or status: {stored!r}") from exc
        if status not in ("ok", "skipped", "error"):
            raise StoredDataError(f"unknown outcome status {status!r}")
        if replace is not None and name == replace.verifier:
            outcomes.append(replace)
            continue
        outcomes.append(
            Outcome(
                verifier=name,
                version=str(stored.get("version", "")),
                status=status,
                findings=tuple(by_verifier.get(name, ())),
                detail=str(stored.get("detail") or ""),
                duration_ms=float(stored.get("duration_ms") or 0.0),
            )
        )
    return outcomes


def _finding(f: FindingRecord) -> Finding:
    try:
        severity = Severity.parse(f.severity)
    except ValueError as exc:
        raise StoredDataError(str(exc)) from exc
    return Finding(f.verifier, f.rule_id, severity, f.title, f.location, f.evidence, f.fix)


def outcomes_json(verdict: VerdictView, replace: Outcome | None) -> tuple[dict[str, Any], ...]:
    if replace is None:
        return verdict.outcomes
    return tuple(
        {
            **stored,
            "version": replace.version,
            "status": replace.status,
            "detail": replace.detail,
            "findings": len(replace.findings),
        }
        if stored.get("verifier") == replace.verifier
        else stored
        for stored in verdict.outcomes
    )


def stored_outcome(verdict: VerdictView, name: str) -> dict[str, Any] | None:
    return next((o for o in verdict.outcomes if o.get("verifier") == name), None)
