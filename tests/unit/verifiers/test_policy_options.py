"""The policy options re-evaluation relies on: ``unfixed = "report"`` (findings with no known fix
are reported, not blocking) and ``on_new_findings = "notify"`` (an already pullable image stays
pullable; errors still quarantine)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.policy import Policy
from verifiers.base import Finding, Severity
from verifiers.pipeline import Outcome
from verifiers.policy import decide

NOFIX = Finding("vulnerabilities", "OSV-1", Severity.CRITICAL, "a (no fix known)", fix="")
FIXED = Finding("vulnerabilities", "OSV-2", Severity.HIGH, "b (fix: 2.0)", fix="2.0")
CONFIG = Finding("config-sanity", "config.no-user", Severity.HIGH, "root")
UNKNOWN = Finding("scan", "X-1", Severity.HIGH, "no fix notion")  # fix None: not a package


def policy(**kw: object) -> Policy:
    base: dict[str, object] = {"name": "p", "repositories": ["*"], "require": ["vulnerabilities"]}
    base.update(kw)
    return Policy.model_validate(base)


def vulns(*findings: Finding) -> Outcome:
    return Outcome("vulnerabilities", "1.advisories-1", "ok", findings)


def test_unfixed_findings_block_by_default() -> None:
    decision = decide(policy(), "r", [vulns(NOFIX)])
    assert decision.state == "quarantined" and decision.blocking == (NOFIX,)


def test_unfixed_report_reports_without_blocking() -> None:
    lenient = policy(verifiers={"vulnerabilities": {"unfixed": "report"}})
    decision = decide(lenient, "r", [vulns(NOFIX)])
    assert decision.state == "passed" and decision.reported == (NOFIX,)
    assert decision.blocking == () and decision.reasons == ()
    both = decide(lenient, "r", [vulns(NOFIX, FIXED)])
    assert both.state == "quarantined" and both.blocking == (FIXED,)


def test_unfixed_report_applies_per_verifier_and_only_to_known_no_fix() -> None:
    lenient = policy(require=["vulnerabilities", "scan"], verifiers={"scan": {"unfixed": "report"}})
    scan = Outcome("scan", "1", "ok", (UNKNOWN,))
    decision = decide(lenient, "r", [vulns(NOFIX), scan])
    assert set(decision.blocking) == {NOFIX, UNKNOWN}  # NOFIX's verifier is not lenient;
    # UNKNOWN's verifier is, but it states no fix at all (None), which is not "no fix known"


@pytest.mark.parametrize("previous", ["passed", "released"])
def test_notify_keeps_an_already_pullable_image_passed(previous: str) -> None:
    notify = policy(on_new_findings="notify")
    decision = decide(notify, "r", [vulns(FIXED)], previous=previous)
    assert decision.state == "passed" and decision.notified
    assert decision.blocking == (FIXED,)
    assert decision.reasons[0].startswith("notify only") and "OSV-2" in decision.reasons[0]


@pytest.mark.parametrize("previous", [None, "pending", "quarantined"])
def test_notify_does_not_let_a_new_or_quarantined_image_through(previous: str | None) -> None:
    notify = policy(on_new_findings="notify")
    decision = decide(notify, "r", [vulns(FIXED)], previous=previous)
    assert decision.state == "quarantined" and not decision.notified


def test_notify_never_covers_errors_or_missing_verifiers() -> None:
    notify = policy(on_new_findings="notify", require=["vulnerabilities", "signature"])
    decision = decide(notify, "r", [vulns(FIXED)], previous="passed")
    assert decision.state == "quarantined" and not decision.notified
    broken = Outcome("vulnerabilities", "1", "error", (), "crashed")
    failed = decide(policy(on_new_findings="notify"), "r", [broken], previous="passed")
    assert failed.state == "quarantined"


def test_quarantine_is_the_default_for_new_findings() -> None:
    decision = decide(policy(), "r", [vulns(FIXED)], previous="passed")
    assert decision.state == "quarantined" and not decision.notified


def test_options_are_validated_and_change_the_policy_version() -> None:
    with pytest.raises(ValidationError, match="on_new_findings"):
        policy(on_new_findings="ignore")
    with pytest.raises(ValidationError, match="unfixed"):
        policy(verifiers={"vulnerabilities": {"unfixed": "maybe"}})
    assert policy().version != policy(on_new_findings="notify").version
