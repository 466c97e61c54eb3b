"""Policies: matching by glob, and turning outcomes into decisions (fail closed)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.policy import DENY_UNMATCHED, Policy, VerifierPolicy, Waiver, match_policy
from verifiers.base import Finding, Severity
from verifiers.pipeline import Outcome
from verifiers.policy import blocking, decide, sort


def policy(**kw: object) -> Policy:
    base: dict[str, object] = {"name": "p", "repositories": ["*"], "require": ["scan"]}
    base.update(kw)
    return Policy.model_validate(base)


def ok(*findings: Finding, name: str = "scan") -> Outcome:
    return Outcome(name, "1", "ok", findings)


CRIT = Finding("scan", "CVE-1", Severity.CRITICAL, "bad")
LOW = Finding("scan", "CVE-2", Severity.LOW, "meh")


def test_most_specific_pattern_wins() -> None:
    everything = policy(name="all", repositories=["*"])
    team = policy(name="team", repositories=["team/*"])
    exact = policy(name="exact", repositories=["team/app"])
    policies = [everything, team, exact]
    assert match_policy(policies, "team/app").name == "exact"
    assert match_policy(policies, "team/other").name == "team"
    assert match_policy(policies, "x").name == "all"
    assert match_policy([team], "elsewhere") is DENY_UNMATCHED


def test_unmatched_and_empty_policies_deny() -> None:
    assert decide(DENY_UNMATCHED, "r", [ok()]).state == "quarantined"
    empty = policy(require=[])
    decision = decide(empty, "r", [ok()])
    assert decision.state == "quarantined"
    assert "requires no verifier" in decision.reasons[0]


def test_threshold_and_summary() -> None:
    decision = decide(policy(), "r", [ok(CRIT, LOW)])
    assert decision.state == "quarantined"
    assert decision.reasons == ("1 critical (CVE-1)",)
    assert decide(policy(severity_threshold="critical"), "r", [ok(LOW)]).state == "passed"


def test_errors_fail_closed_unless_the_policy_fails_open() -> None:
    crashed = Outcome("scan", "1", "error", detail="crashed: boom")
    closed = decide(policy(), "r", [crashed])
    assert closed.state == "quarantined" and "verifier scan failed: crashed: boom" in closed.reasons
    open_ = policy(verifiers={"scan": {"on_error": "pass"}})
    assert decide(open_, "r", [crashed]).state == "passed"


def test_required_verifier_missing() -> None:
    decision = decide(policy(require=["scan", "sig"]), "r", [ok()])
    assert "required verifier sig did not run" in decision.reasons


def test_a_skip_is_not_a_pass() -> None:
    skipped = Outcome("scan", "1", "skipped", detail="could not read the config")
    decision = decide(policy(), "r", [skipped])
    assert decision.state == "quarantined"
    assert decision.reasons == (
        "required verifier scan did not check it: could not read the config",
    )


def test_an_exemption_is_a_pass() -> None:
    exempt = Outcome("scan", "1", "skipped", detail="rule x lets r be unsigned", exempt=True)
    assert decide(policy(), "r", [exempt]).state == "passed"


def test_a_skip_of_a_verifier_that_does_not_apply_is_not_counted() -> None:
    """An index is checked only by the verifiers that check indexes: the others are its
    platform images' (the service says which apply)."""
    assert decide(policy(), "r", [ok()], expected=frozenset()).state == "passed"
    assert decide(policy(), "r", [], expected=frozenset()).state == "quarantined"  # nothing ran


def test_waiting_makes_a_clean_decision_pending_but_never_hides_a_block() -> None:
    waiting = ("platform image sha256:c is still being verified",)
    pending = decide(policy(), "r", [ok()], waiting=waiting)
    assert pending.state == "pending" and pending.reasons == waiting
    assert decide(policy(), "r", [ok(CRIT)], waiting=waiting).state == "quarantined"


def test_waivers_respect_scope_and_expiry() -> None:
    now = datetime.now(UTC)
    waiver = Waiver(finding="CVE-1", repositories=["team/*"], reason="not reachable", author="a")
    expired = Waiver(finding="scan:CVE-1", reason="old", author="a", expires=now - timedelta(1))
    assert decide(policy(waivers=[waiver]), "team/app", [ok(CRIT)]).state == "passed"
    assert decide(policy(waivers=[waiver]), "other/app", [ok(CRIT)]).state == "quarantined"
    assert decide(policy(waivers=[expired]), "team/app", [ok(CRIT)]).state == "quarantined"


def test_warn_mode_never_blocks_but_says_so() -> None:
    decision = decide(policy(mode="warn"), "r", [ok(CRIT)])
    assert decision.state == "passed" and decision.warned and decision.reasons


def test_policy_version_changes_with_content() -> None:
    assert policy().version != policy(severity_threshold="low").version
    assert policy().version == policy().version


@pytest.mark.parametrize("pattern", ["", "a b", "x\n"])
def test_bad_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(ValueError):
        policy(repositories=[pattern])


@given(
    findings=st.lists(
        st.builds(
            Finding,
            verifier=st.sampled_from(["scan", "vulnerabilities"]),
            rule_id=st.sampled_from(["CVE-1", "CVE-2", "R"]),
            severity=st.sampled_from(list(Severity)),
            title=st.just("t"),
            fix=st.sampled_from([None, "", "1.2"]),
        ),
        max_size=8,
    ),
    threshold=st.sampled_from(["info", "low", "medium", "high", "critical"]),
    waived=st.sampled_from([[], ["CVE-1"], ["vulnerabilities:CVE-2"]]),
    report=st.booleans(),
)
def test_the_blocking_filter_agrees_with_sort(
    findings: list[Finding], threshold: str, waived: list[str], report: bool
) -> None:
    """The pull gate filters a blob's stored findings in the database with ``blocking``; it
    must select exactly what ``sort`` calls blocking."""
    chosen = policy(
        severity_threshold=threshold,
        waivers=[Waiver(finding=w, reason="r", author="a") for w in waived],
        verifiers={"vulnerabilities": VerifierPolicy(unfixed="report")} if report else {},
    )
    rules = blocking(chosen, "team/app")
    filtered = [
        f
        for f in findings
        if f.severity.name.lower() in rules.severities
        and not {f.rule_id, f.finding_id} & rules.waived
        and not (f.verifier in rules.unfixed_report and f.fix == "")
    ]
    assert filtered == list(sort(chosen, "team/app", findings).blocking)


def test_a_verification_that_could_not_complete_is_a_failure() -> None:
    from verifiers.policy import incomplete

    decision = incomplete(policy(), "r", "the store is down")
    assert decision.state == "quarantined" and not decision.warned
    assert decision.reasons == ("verification could not complete: the store is down",)
    warned = incomplete(policy(mode="warn"), "r", "the store is down")
    assert warned.state == "passed" and warned.warned
    denied = incomplete(DENY_UNMATCHED, "r", "the store is down")
    assert denied.state == "quarantined" and "no policy allows repository r" in denied.reasons


def test_the_summary_counts_advisories_then_packages() -> None:
    """Issue 16: a Debian image with 7 CVEs of one source package reported "11 critical", one
    per binary package the source builds (and per advisory). A person counts advisories, then
    where they are."""
    from verifiers.scan.model import Package
    from verifiers.vulns.assess import finding
    from verifiers.vulns.ecosystems import Query
    from verifiers.vulns.match import Match
    from verifiers.vulns.osv import Advisory

    def advisory(n: int) -> Advisory:
        affected = [{"package": {"ecosystem": "Debian:12", "name": "openssl"}}]
        return Advisory.from_json({"id": f"CVE-2024-{n}", "affected": affected})

    binaries = ["libssl3", "openssl", "libcrypto3"]
    found = []
    for n in range(7):
        owner = advisory(n)
        # CVE-2024-0 and -1 hit all three binaries, the five others the library: 2 * 3 + 5 = 11
        for name in binaries if n < 2 else binaries[:1]:
            package = Package("deb", name, "1:3.0.11-1", "var/lib/dpkg/status", "sha256:l")
            query = Query("Debian:12", "openssl", "1:3.0.11-1")
            found.append(finding(package, query, Match(owner, owner.affected[0], "1:3.0.13-1")))
    critical = [replace(f, severity=Severity.CRITICAL) for f in found]
    assert len(critical) == 11
    decision = decide(policy(), "r", [ok(*critical)])
    assert decision.reasons == (
        "7 critical (CVE-2024-0, CVE-2024-1, CVE-2024-2, ...) in 3 packages",
    )
    setuid = [
        Finding("scan", "hardening.setuid", Severity.HIGH, "setuid", f"sha256:l:bin/{tool}")
        for tool in ("a", "b")
    ]
    mixed = decide(policy(), "r", [ok(CRIT, *setuid)])
    assert mixed.reasons == ("1 critical (CVE-1); 1 high (hardening.setuid) in 2 places",)
