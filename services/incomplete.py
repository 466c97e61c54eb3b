"""Verifications that could not complete: what an attempt's failure is recorded as, when a
partial reading must not be decided on, and the failure verdict of a dead-lettered job.

An image whose verification never completes must not stay ``pending`` for ever (pullers would
be told "still being verified" for good): once its job is dead-lettered it gets a failure that
says why (``verifiers.policy.incomplete``). The service (``services.verification``) stores it;
this module only says what it is.
"""

from __future__ import annotations

from config.policy import Policy
from oci.errors import OCIError
from storage.jobs import Abandoned
from storage.verdicts import DecisionRecord, FindingRecord
from verifiers.base import SourceUnavailable, VerifierError
from verifiers.pipeline import Outcome
from verifiers.policy import Decision, incomplete

SWEEP_SECONDS = 30.0
"""How often the sweeper looks for pending images whose verification was dead-lettered where
the failing attempt did not settle it (a job whose workers kept dying, a crash between burying
the job and deciding, images left pending by an older version)."""
RULE = "verification.incomplete"
"""The finding of a verification that could not complete."""
ACTOR = "gatekeeper"


def failure_text(exc: Exception) -> str:
    """Why an attempt failed, as the job (and a verdict that gives up on it) records it: an
    OCI error's or a verifier error's own message is written for people; anything else is
    named by its class."""
    if isinstance(exc, OCIError):
        return exc.message
    if isinstance(exc, VerifierError):  # raised on purpose, with a message for people
        return str(exc)
    return f"{exc.__class__.__name__}: {exc}"


def require_readable(outcomes: list[Outcome]) -> None:
    """Raise when a verifier could not read the image (the registry or its object storage
    failed): no decision is made on a partial reading; the attempt fails and is retried."""
    unread = [o for o in outcomes if o.unavailable]
    if unread:
        raise SourceUnavailable("; ".join(f"{o.verifier}: {o.detail}" for o in unread)[:1000])


def decision_for(policy: Policy, dead: Abandoned) -> tuple[Decision, DecisionRecord]:
    """The failure verdict of an image whose latest verification job is dead: the policy's
    decision (``verifiers.policy.incomplete``) and what is stored, with no verifier outcome
    (nothing stored can be re-decided into a pass) and one finding that says why."""
    why = (
        f"{dead.error[:500]} (after {dead.attempts} attempts; `gatekeeper quarantine rescan "
        f"{dead.repository}@{dead.digest}` verifies it again)"
    )
    decision = incomplete(policy, dead.repository, why)
    finding = FindingRecord(ACTOR, RULE, "critical", decision.reasons[0], "verification")
    record = DecisionRecord(
        state=decision.state,
        reasons=decision.reasons,
        policy=decision.policy,
        policy_version=decision.policy_version,
        data_versions={},
        outcomes=(),
        findings=(finding,),
    )
    return decision, record
