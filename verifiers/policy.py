"""Turn verifier outcomes into a decision, under one policy.

Composable in the sigstore-python sense: each rule is a small function that adds reasons; the
decision passes only if no rule objected *and* the policy is not empty. An empty or unmatched
policy denies on purpose.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from config.policy import Policy, Waiver
from verifiers.base import Finding, Severity
from verifiers.pipeline import Outcome

DecisionState = Literal["passed", "quarantined"]


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one image, with every reason it gave."""

    state: DecisionState
    reasons: tuple[str, ...]
    """Why it is quarantined (or, in warn mode, what would have quarantined it)."""
    policy: str
    policy_version: str
    blocking: tuple[Finding, ...] = field(default_factory=tuple)
    waived: tuple[Finding, ...] = field(default_factory=tuple)
    warned: bool = False
    """True when warn mode let through an image that enforce mode would have blocked."""
    reported: tuple[Finding, ...] = field(default_factory=tuple)
    """At or above the threshold but not blocking: no fix is known and the verifier's policy
    says ``unfixed = "report"``."""
    notified: bool = False
    """True when ``on_new_findings = "notify"`` kept an already passed image passed although
    ``blocking`` is not empty: the findings are recorded and announced, the image stays
    pullable."""


def _waiver_for(
    finding: Finding, waivers: Sequence[Waiver], repository: str, now: datetime
) -> Waiver | None:
    for waiver in waivers:
        if waiver.finding not in (finding.rule_id, finding.finding_id):
            continue
        if waiver.expires is not None and _aware(waiver.expires) <= now:
            continue
        if any(fnmatch.fnmatchcase(repository, p) for p in waiver.repositories):
            return waiver
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _summarise(findings: Sequence[Finding]) -> str:
    by_severity: dict[Severity, list[str]] = {}
    for finding in findings:
        by_severity.setdefault(finding.severity, []).append(finding.rule_id)
    parts = []
    for severity in sorted(by_severity, reverse=True):
        ids = sorted(set(by_severity[severity]))
        shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        count = len(by_severity[severity])
        parts.append(f"{count} {severity.name.lower()} ({shown})")
    return "; ".join(parts)


def decide(
    policy: Policy,
    repository: str,
    outcomes: Sequence[Outcome],
    now: datetime | None = None,
    *,
    previous: str | None = None,
) -> Decision:
    """Apply ``policy`` to the outcomes of one pipeline run. ``previous`` is the image's
    current state (None for a first verification): ``on_new_findings`` applies only to images
    that were already pullable."""
    now = now or datetime.now(UTC)
    reasons: list[str] = []
    if policy.deny_all:
        reasons.append(f"no policy allows repository {repository}")
    elif not policy.require:
        # An empty policy must never mean "allow" (like sigstore's empty AllOf).
        reasons.append(f"policy {policy.name} requires no verifier, so it allows nothing")
    by_name = {o.verifier: o for o in outcomes}
    for required in policy.require:
        # A skip means "does not apply" (an index, a signature artifact) and is not a failure.
        if required not in by_name:
            reasons.append(f"required verifier {required} did not run")
    for outcome in outcomes:
        if outcome.status == "error":
            rule = policy.verifiers.get(outcome.verifier)
            if rule is None or rule.on_error == "fail":
                reasons.append(f"verifier {outcome.verifier} failed: {outcome.detail}")
    if not outcomes and not policy.deny_all:
        reasons.append("no verifier ran")
    threshold = Severity.parse(policy.severity_threshold)
    blocking: list[Finding] = []
    waived: list[Finding] = []
    reported: list[Finding] = []
    for outcome in outcomes:
        rule = policy.verifiers.get(outcome.verifier)
        for finding in outcome.findings:
            if finding.severity < threshold:
                continue
            if _waiver_for(finding, policy.waivers, repository, now):
                waived.append(finding)
            elif finding.fix == "" and rule is not None and rule.unfixed == "report":
                reported.append(finding)
            else:
                blocking.append(finding)
    # Only findings may be let through by "notify": an error or a missing verifier never is.
    notified = (
        bool(blocking)
        and not reasons
        and policy.on_new_findings == "notify"
        and previous in ("passed", "released")
    )
    if blocking:
        summary = _summarise(blocking)
        reasons.append(f"notify only (image already passed): {summary}" if notified else summary)
    blocked = bool(reasons) and not notified
    warned = blocked and policy.mode == "warn" and not policy.deny_all
    return Decision(
        state="quarantined" if blocked and not warned else "passed",
        reasons=tuple(reasons),
        policy=policy.name,
        policy_version=policy.version,
        blocking=tuple(blocking),
        waived=tuple(waived),
        warned=warned,
        reported=tuple(reported),
        notified=notified,
    )
