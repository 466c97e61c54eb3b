"""Turn verifier outcomes into a decision, under one policy.

Composable in the sigstore-python sense: each rule below is a small function that returns the
reasons it objects; the decision passes only if no rule objected *and* the policy is not empty.
An empty or unmatched policy denies on purpose, and **a skip is not a pass**: a required
verifier that did not check the image (it skipped, crashed, or never ran) objects, unless its
skip is an exemption its own settings grant.

What the rules see (:class:`Inputs`) is what the verification service established: the
pipeline's outcomes (the built-in ``content`` outcome among them, whose findings say what the
content is and what it depends on), and which verifiers apply to this kind of manifest.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from config.policy import Policy, VerifierPolicy, Waiver
from verifiers.base import Finding, Severity
from verifiers.classify import CONTENT
from verifiers.lifecycle import PULLABLE, State
from verifiers.pipeline import Outcome, required_here
from verifiers.vex.match import aliases_of, package_matches
from verifiers.vulns.assess import package_of


@dataclass(frozen=True)
class Decision:
    """The policy's answer for one image, with every reason it gave."""

    state: State
    """``passed`` or ``quarantined``; ``pending`` when ``waiting`` says what it waits for."""
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


@dataclass(frozen=True)
class Inputs:
    """Everything the rules decide on."""

    policy: Policy
    repository: str
    outcomes: Sequence[Outcome]
    now: datetime
    expected: Collection[str] | None
    """Verifiers that apply to this manifest (an index: only those that check indexes); None:
    all of them."""


Rule = Callable[[Inputs], list[str]]


def policy_allows(inputs: Inputs) -> list[str]:
    """An unmatched policy denies; an empty one allows nothing (like sigstore's empty AllOf)."""
    if inputs.policy.deny_all:
        return [f"no policy allows repository {inputs.repository}"]
    if not inputs.policy.require:
        return [f"policy {inputs.policy.name} requires no verifier, so it allows nothing"]
    return []


def required_checked(inputs: Inputs) -> list[str]:
    """Every required verifier that applies ran and looked: a skip is not a pass."""
    by_name = {o.verifier: o for o in inputs.outcomes}
    reasons = []
    for required in required_here(inputs.policy.require, inputs.expected):
        outcome = by_name.get(required)
        if outcome is None:
            reasons.append(f"required verifier {required} did not run")
        elif outcome.status == "skipped" and not outcome.exempt:
            reasons.append(f"required verifier {required} did not check it: {outcome.detail}")
    return reasons


def no_errors(inputs: Inputs) -> list[str]:
    """A crashed or timed-out verifier fails closed unless its policy says ``on_error=pass``."""
    return [
        f"verifier {o.verifier} failed: {o.detail}"
        for o in inputs.outcomes
        if o.status == "error" and _rule(inputs.policy, o.verifier).on_error == "fail"
    ]


def something_ran(inputs: Inputs) -> list[str]:
    if not inputs.outcomes and not inputs.policy.deny_all:
        return ["no verifier ran"]
    return []


RULES: tuple[Rule, ...] = (policy_allows, required_checked, no_errors, something_ran)
"""The rules that object without looking at findings; findings are sorted by :func:`sort`."""


@dataclass(frozen=True)
class Sorted:
    """Findings at or above the threshold, by what the policy makes of them."""

    blocking: tuple[Finding, ...]
    waived: tuple[Finding, ...]
    reported: tuple[Finding, ...]


def sort(
    policy: Policy,
    repository: str,
    findings: Sequence[Finding],
    now: datetime | None = None,
    *,
    digest: str | None = None,
) -> Sorted:
    """Which findings block under ``policy`` for image ``digest`` of ``repository`` (None:
    an image not known by digest, which waivers limited to some images never cover)."""
    moment = now or datetime.now(UTC)
    threshold = Severity.parse(policy.severity_threshold)
    blocking: list[Finding] = []
    waived: list[Finding] = []
    reported: list[Finding] = []
    waivers = _index(policy.waivers)
    for finding in findings:
        if finding.severity < threshold:
            continue
        if _waiver_for(finding, waivers, repository, moment, digest):
            waived.append(finding)
        elif finding.fix == "" and _rule(policy, finding.verifier).unfixed == "report":
            reported.append(finding)
        else:
            blocking.append(finding)
    return Sorted(tuple(blocking), tuple(waived), tuple(reported))


@dataclass(frozen=True)
class Blocking:
    """What blocks under one policy in one repository, as plain values a database filters on
    (the pull gate asks a blob's findings this, per request): a finding blocks if its severity
    is one of ``severities``, no waiver covers it, and it is not an unfixed finding of a
    verifier whose findings without a fix only report. Waivers limited to some images or
    packages (VEX statements) are not among ``waived``: a blob's finding they cover leaves
    with the images decided under them, which weighed it (``storage.content.unweighed``)."""

    severities: tuple[str, ...]
    waived: frozenset[str]
    """Waived rule ids and ``verifier:rule`` ids, in force now for this repository."""
    unfixed_report: frozenset[str]
    """Verifiers with ``unfixed = "report"``."""


def blocking(policy: Policy, repository: str, now: datetime | None = None) -> Blocking:
    """The :func:`sort` rules as a filter (same result, for findings at rest)."""
    moment = now or datetime.now(UTC)
    threshold = Severity.parse(policy.severity_threshold)
    waived = frozenset(
        w.finding
        for w in policy.waivers
        if not w.narrowed  # one limited to some images or packages weighs with its images
        and (w.expires is None or _aware(w.expires) > moment)
        and any(fnmatch.fnmatchcase(repository, p) for p in w.repositories)
    )
    return Blocking(
        tuple(s.name.lower() for s in Severity if s >= threshold),
        waived,
        frozenset(name for name, rule in policy.verifiers.items() if rule.unfixed == "report"),
    )


def decide(
    policy: Policy,
    repository: str,
    outcomes: Sequence[Outcome],
    now: datetime | None = None,
    *,
    previous: str | None = None,
    expected: Collection[str] | None = None,
    waiting: Sequence[str] = (),
    digest: str | None = None,
) -> Decision:
    """Apply ``policy`` to the outcomes of one pipeline run. ``previous`` is the image's
    current state (None for a first verification): ``on_new_findings`` applies only to images
    that were already pullable. ``waiting``: what the manifest still waits for (an index's
    children being verified); with nothing else against it, the decision is ``pending``.
    ``digest``: the image's, for waivers limited to some images (VEX statements)."""
    inputs = Inputs(policy, repository, outcomes, now or datetime.now(UTC), expected)
    reasons = [reason for rule in RULES for reason in rule(inputs)]
    found = sort(
        policy, repository, [f for o in outcomes for f in o.findings], inputs.now, digest=digest
    )
    notified = only_notifies(policy, found, reasons, previous)
    if found.blocking:
        reasons.append(blocking_reason(found.blocking, notified))
    blocked = bool(reasons) and not notified
    warned = blocked and warns_only(policy)
    state = _state(blocked=blocked, warned=warned, waiting=bool(waiting))
    return Decision(
        state=state,
        reasons=tuple([*reasons, *waiting] if state is State.PENDING else reasons),
        policy=policy.name,
        policy_version=policy.version,
        blocking=found.blocking,
        waived=found.waived,
        warned=warned,
        reported=found.reported,
        notified=notified,
    )


def only_notifies(
    policy: Policy, found: Sorted, reasons: Sequence[str], previous: str | None
) -> bool:
    """``on_new_findings = "notify"`` keeps an already pullable image pullable when findings
    are all that is against it: an error or a missing verifier is never let through so."""
    return (
        bool(found.blocking)
        and not reasons
        and policy.on_new_findings == "notify"
        and previous in PULLABLE
    )


def blocking_reason(blocking: Sequence[Finding], notified: bool) -> str:
    """One reason for every blocking finding. What the content is and depends on reads best
    in its own words (a child's reasons); the verifiers' findings are summarised."""
    own_words = [f.title for f in blocking if f.verifier == CONTENT]
    rest = [f for f in blocking if f.verifier != CONTENT]
    summary = "; ".join([*own_words, *([_summarise(rest)] if rest else [])])
    return f"notify only (image already passed): {summary}" if notified else summary


def warns_only(policy: Policy) -> bool:
    """Warn mode reports what would block and lets it through, except under the deny-all
    policy of an unmatched repository, which always blocks."""
    return policy.mode == "warn" and not policy.deny_all


def _state(*, blocked: bool, warned: bool, waiting: bool) -> State:
    if blocked and not warned:
        return State.QUARANTINED
    if waiting and not warned:
        return State.PENDING
    return State.PASSED


INCOMPLETE = "verification could not complete"
"""The first words of the reason of a verification that could not complete (:func:`incomplete`)."""


def incomplete(policy: Policy, repository: str, why: str, now: datetime | None = None) -> Decision:
    """The decision on an image whose verification could not complete: every attempt failed
    (the upstream, or the object storage it redirects to, stayed unreachable; the worker
    died) and the job was dead-lettered.

    Nothing is known of the content, so it is a failure, never a pass nor "still pending":
    quarantined under an enforcing policy (the reason says what went wrong), reported but let
    through in warn mode like any other failure. No verifier outcome is invented, so no
    re-decision from stored data can turn it into a pass; only a verification that completes
    (a rescan) replaces it."""
    inputs = Inputs(policy, repository, (), now or datetime.now(UTC), None)
    reasons = [f"{INCOMPLETE}: {why}", *policy_allows(inputs)]
    warned = warns_only(policy)
    return Decision(
        state=State.PASSED if warned else State.QUARANTINED,
        reasons=tuple(reasons),
        policy=policy.name,
        policy_version=policy.version,
        warned=warned,
    )


_DEFAULT_RULE = VerifierPolicy()


def _rule(policy: Policy, verifier: str) -> VerifierPolicy:
    return policy.verifiers.get(verifier, _DEFAULT_RULE)


Waivers = dict[str, list[Waiver]]
"""A policy's waivers by the finding they name, so each finding costs a few lookups however
many waivers (VEX statements) the policy holds."""


def _index(waivers: Sequence[Waiver]) -> Waivers:
    index: Waivers = {}
    for waiver in waivers:
        index.setdefault(waiver.finding, []).append(waiver)
    return index


def _waiver_for(
    finding: Finding,
    waivers: Waivers,
    repository: str,
    now: datetime,
    digest: str | None = None,
) -> Waiver | None:
    """A waiver in force covering ``finding``: by its rule id, ``verifier:rule`` or an alias
    of its advisory, in the repository, and where the waiver is limited to some images or
    packages, for this image and this package. (Run for every finding of every decision: the
    aliases are read only when no waiver names the finding's own ids.)"""
    if not waivers:
        return None
    for names in ((finding.rule_id, finding.finding_id), _aliases(finding, waivers)):
        for name in names:
            candidates = waivers.get(name)
            if candidates:
                found = _in_force(candidates, finding, repository, now, digest)
                if found is not None:
                    return found
    return None


def _aliases(finding: Finding, waivers: Waivers) -> tuple[str, ...]:
    """The finding's aliases, not parsed when none of a few waivers' names is even in its
    evidence (the common case: a handful of waivers, none about this finding)."""
    if finding.fix is None:
        return ()
    if len(waivers) <= 16 and not any(name in finding.evidence for name in waivers):
        return ()
    return aliases_of(finding)


def _in_force(
    candidates: list[Waiver],
    finding: Finding,
    repository: str,
    now: datetime,
    digest: str | None,
) -> Waiver | None:
    for waiver in candidates:
        if waiver.expires is not None and _aware(waiver.expires) <= now:
            continue
        if waiver.digests and digest not in waiver.digests:
            continue
        if waiver.packages and not any(package_matches(p, finding) for p in waiver.packages):
            continue
        if any(fnmatch.fnmatchcase(repository, p) for p in waiver.repositories):
            return waiver
    return None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _summarise(findings: Sequence[Finding]) -> str:
    """What a person counts, per severity: distinct rules (advisories), then where they were
    found: ``7 critical (CVE-1, CVE-2, CVE-3, ...) in 11 packages``, ``2 high
    (hardening.setuid, hardening.ssh-server) in 3 places``."""
    by_severity: dict[Severity, list[Finding]] = {}
    for finding in findings:
        by_severity.setdefault(finding.severity, []).append(finding)
    parts = []
    for severity in sorted(by_severity, reverse=True):
        group = by_severity[severity]
        ids = sorted({f.rule_id for f in group})
        shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        parts.append(f"{len(ids)} {severity.name.lower()} ({shown}){_where(group)}")
    return "; ".join(parts)


def _where(group: Sequence[Finding]) -> str:
    """`` in N packages`` for findings about package versions (``fix`` is set); `` in N
    places`` for others, when a rule was found in more than one place."""
    packages = {package_of(f) for f in group if f.fix is not None}
    others = [f for f in group if f.fix is None]
    places = {(f.rule_id, f.location) for f in others}
    said = [_count(len(packages), "package")] if packages else []
    if len(places) > len({f.rule_id for f in others}):
        said.append(_count(len(places), "place"))
    return f" in {' and '.join(said)}" if said else ""


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
