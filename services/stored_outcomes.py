"""A stored verdict back into the values the policy decides on, so it can be decided again
without running any verifier: its outcomes (as JSON on the verdict) with their findings (rows).

Used by re-evaluation (``services.reevaluate``) and the policy dry-run (``proxy.admin.policy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from config.policy import Policy
from storage.verdicts import FindingRecord, VerdictView
from verifiers.base import Finding, Severity
from verifiers.classify import CONTENT, Kind
from verifiers.pipeline import Outcome
from verifiers.policy import Decision, decide

HISTORY = "history"
"""The outcome of findings inherited through shared blobs."""
HELD = "content.held"
"""The content finding of a manifest whose content an admin holds (``services.examine``)."""

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
    across images (many share findings of a common base layer). Findings inherited through a
    shared blob (``origin`` set) belong to the ``history`` outcome, whatever their verifier."""
    by_verifier: dict[str, list[Finding]] = {}
    cache = {} if parsed is None else parsed
    for f in findings:
        owner = HISTORY if f.origin is not None else f.verifier
        if replace is not None and owner == replace.verifier:
            continue  # stands in for them
        finding = cache.get(f)
        if finding is None:
            if len(cache) >= PARSED_LIMIT:
                cache.clear()  # a fleet of all-different findings: bound the memory, not the work
            finding = cache[f] = _finding(f)
        by_verifier.setdefault(owner, []).append(finding)
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
                findings=tuple(by_verifier.pop(name, ())),
                detail=str(stored.get("detail") or ""),
                duration_ms=float(stored.get("duration_ms") or 0.0),
                exempt=bool(stored.get("exempt", False)),
            )
        )
    if by_verifier.get(HISTORY):
        outcomes.append(Outcome(HISTORY, "", "ok", tuple(by_verifier[HISTORY])))
    return outcomes


def _finding(f: FindingRecord) -> Finding:
    try:
        severity = Severity.parse(f.severity)
    except ValueError as exc:
        raise StoredDataError(str(exc)) from exc
    return Finding(f.verifier, f.rule_id, severity, f.title, f.location, f.evidence, f.fix, f.blob)


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


def stored_kind(verdict: VerdictView) -> str | None:
    """What the verification found the manifest to be (None: decided before it said)."""
    found = stored_outcome(verdict, CONTENT)
    kind = found.get("kind") if found else None
    return str(kind) if kind else None


def expected_of(verdict: VerdictView) -> frozenset[str] | None:
    """The verifiers that applied to this manifest when it was verified (None: all)."""
    kind = stored_kind(verdict)
    if kind in (Kind.ARTIFACT, Kind.REFUSED):
        return frozenset()
    if kind == Kind.INDEX:
        ran = {str(o.get("verifier")) for o in verdict.outcomes}
        return frozenset(ran - {CONTENT, HISTORY})
    return None


def needs_verification(verdict: VerdictView) -> bool:
    """Decided before content was classified, with a verifier that skipped it: whether that
    skip was an artifact's, an exemption or a gap, only a verification can tell now."""
    return stored_kind(verdict) is None and any(
        o.get("status") == "skipped" for o in verdict.outcomes
    )


def held_in(outcomes: Sequence[Outcome]) -> bool:
    """The content examination found an admin's hold covering the content."""
    return any(f.rule_id == HELD for o in outcomes if o.verifier == CONTENT for f in o.findings)


def decide_stored(policy: Policy, verdict: VerdictView, outcomes: Sequence[Outcome]) -> Decision:
    """The policy's decision on outcomes rebuilt from a stored verdict."""
    return decide(
        policy,
        verdict.repository,
        outcomes,
        previous=verdict.effective_state(),
        expected=expected_of(verdict),
        digest=verdict.digest,
    )
