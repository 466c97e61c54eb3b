"""From statements to waivers, and what those waivers cover when the policy decides: an image
by digest, a package by purl (and a package within an image), the advisory's aliases; the
latest word on a (vulnerability, product) counts; a referrer speaks only for its subject."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from config.policy import Policy, Waiver
from tests.support.vex import document, statement
from verifiers.base import Finding, Severity
from verifiers.lifecycle import State
from verifiers.pipeline import Outcome
from verifiers.policy import blocking, decide
from verifiers.vex.claims import Source, waivers
from verifiers.vex.match import Target, name_target
from verifiers.vex.model import from_data

IMAGE = "sha256:" + "1" * 64
OTHER = "sha256:" + "2" * 64
NOW = datetime(2026, 6, 1, tzinfo=UTC)
REPO = "team/app"


def vuln(rule: str = "PYSEC-2023-254", package: str = "cryptography 38.0.4") -> Finding:
    """A finding as the vulnerabilities verifier makes it."""
    return Finding(
        "vulnerabilities",
        rule,
        Severity.HIGH,
        f"{package}: NULL dereference (fix: 41.0.6)",
        "sha256:layer:usr/lib/python3/dist-packages/cryptography-38.0.4.dist-info",
        f"PyPI {package}; aliases: CVE-2023-49083, GHSA-jfhm-5ghh-2f97",
        "41.0.6",
        "sha256:layer",
    )


def source(*statements: dict[str, Any], subject: str | None = None, **doc: Any) -> Source:
    return Source(from_data(document(*statements, **doc)), "VEX 1", subject)


def state(
    sources: list[Source], digest: str, *findings: Finding, days: float | None = None
) -> State:
    made = waivers(sources, REPO, expire_after=timedelta(days=days) if days else None, now=NOW)
    policy = Policy(name="p", repositories=["*"], require=["vulnerabilities"], waivers=made)
    outcomes = [Outcome("vulnerabilities", "1", "ok", findings)]
    return decide(policy, REPO, outcomes, NOW, digest=digest).state


def test_products_name_images_packages_and_packages_within_images() -> None:
    assert name_target(IMAGE) == Target(digest=IMAGE)
    assert name_target(f"pkg:oci/app@{IMAGE.replace(':', '%3A')}?repository_url=r/app") == Target(
        digest=IMAGE
    )
    assert name_target("pkg:pypi/cryptography@38.0.4") == Target(
        package="pkg:pypi/cryptography@38.0.4"
    )
    assert name_target("https://example.com/app") is None
    assert name_target("cpe:2.3:a:x:y") is None
    product = {"@id": IMAGE, "subcomponents": [{"@id": "pkg:pypi/cryptography"}]}
    (made,) = waivers([source(statement("CVE-1", [product]))], REPO, expire_after=None, now=NOW)
    assert (made.digests, made.packages) == ([IMAGE], ["pkg:pypi/cryptography"])


def test_not_affected_for_an_image_waives_it_and_no_other_image() -> None:
    vex = [source(statement("PYSEC-2023-254", [IMAGE]))]
    assert state(vex, IMAGE, vuln()) == State.PASSED
    assert state(vex, OTHER, vuln()) == State.QUARANTINED
    assert state([], IMAGE, vuln()) == State.QUARANTINED


def test_the_waiver_reason_carries_author_time_and_justification() -> None:
    doc = source(statement("CVE-1", [IMAGE], impact_statement="never called"), author="Ann")
    (made,) = waivers([doc], REPO, expire_after=None, now=NOW)
    assert made.author == "Ann" and made.repositories == [REPO]
    assert made.reason == (
        "VEX 1 by Ann, 2026-01-01T00:00:00Z: not_affected "
        "(vulnerable_code_not_in_execute_path: never called)"
    )


def test_a_statement_naming_an_alias_covers_the_advisory() -> None:
    assert state([source(statement("CVE-2023-49083", [IMAGE]))], IMAGE, vuln()) == State.PASSED
    assert state([source(statement("CVE-2000-1", [IMAGE]))], IMAGE, vuln()) == State.QUARANTINED


def test_a_package_purl_covers_that_package_and_version_only() -> None:
    def with_purl(purl: str) -> State:
        return state([source(statement("PYSEC-2023-254", [purl]))], IMAGE, vuln())

    assert with_purl("pkg:pypi/cryptography@38.0.4") == State.PASSED
    assert with_purl("pkg:pypi/Cryptography") == State.PASSED  # PEP 503 names, any version
    assert with_purl("pkg:pypi/cryptography@41.0.6") == State.QUARANTINED
    assert with_purl("pkg:pypi/pyopenssl@38.0.4") == State.QUARANTINED
    assert with_purl("pkg:npm/cryptography@38.0.4") == State.QUARANTINED


def test_only_not_affected_and_fixed_waive() -> None:
    for status, wanted in (
        ("fixed", State.PASSED),
        ("affected", State.QUARANTINED),
        ("under_investigation", State.QUARANTINED),
    ):
        assert state([source(statement("PYSEC-2023-254", [IMAGE], status))], IMAGE, vuln()) == (
            wanted
        ), status


def test_the_latest_word_counts_so_a_later_affected_takes_it_back() -> None:
    early = source(statement("PYSEC-2023-254", [IMAGE]), timestamp="2026-01-01T00:00:00Z")
    later = source(
        statement("PYSEC-2023-254", [IMAGE], "affected"), timestamp="2026-02-01T00:00:00Z"
    )
    assert state([early, later], IMAGE, vuln()) == State.QUARANTINED
    assert state([later, early], IMAGE, vuln()) == State.QUARANTINED
    newer = source(statement("PYSEC-2023-254", [IMAGE]), timestamp="2026-03-01T00:00:00Z")
    assert state([early, later, newer], IMAGE, vuln()) == State.PASSED


def test_a_referrer_speaks_only_for_its_subject() -> None:
    about_other = source(statement("PYSEC-2023-254", [OTHER]), subject=IMAGE)
    assert waivers([about_other], REPO, expire_after=None, now=NOW) == []
    package = source(statement("PYSEC-2023-254", ["pkg:pypi/cryptography"]), subject=IMAGE)
    (made,) = waivers([package], REPO, expire_after=None, now=NOW)
    assert made.digests == [IMAGE]  # the package within the image it is attached to
    assert state([package], OTHER, vuln()) == State.QUARANTINED


def test_an_expiry_the_policy_sets_lapses_old_statements() -> None:
    vex = [source(statement("PYSEC-2023-254", [IMAGE]), timestamp="2026-05-25T00:00:00Z")]
    assert state(vex, IMAGE, vuln(), days=30) == State.PASSED
    assert state(vex, IMAGE, vuln(), days=5) == State.QUARANTINED
    (made,) = waivers(vex, REPO, expire_after=timedelta(days=30), now=NOW)
    assert made.expires == datetime(2026, 6, 24, tzinfo=UTC)


def test_narrowed_waivers_stay_out_of_the_blob_filter() -> None:
    made = waivers([source(statement("CVE-1", [IMAGE]))], REPO, expire_after=None, now=NOW)
    policy = Policy(name="p", repositories=["*"], require=["x"], waivers=made)
    assert blocking(policy, REPO, NOW).waived == frozenset()


def test_narrowing_fields_leave_old_policy_versions_alone() -> None:
    """A policy written before VEX keeps its version: its verdicts are not all decided again
    on the upgrade."""
    plain = Waiver(finding="CVE-1", reason="r", author="a")
    policy = Policy(name="p", repositories=["*"], require=["x"], waivers=[plain])
    before = policy.model_dump(mode="json", exclude={"origins", "vex"})
    for waiver in before["waivers"]:
        del waiver["digests"], waiver["packages"]
    canonical = json.dumps(before, sort_keys=True).encode()
    assert policy.version == hashlib.sha256(canonical).hexdigest()[:16]
    narrowed = Policy(
        name="p",
        repositories=["*"],
        require=["x"],
        waivers=[plain.model_copy(update={"digests": [IMAGE]})],
    )
    assert narrowed.version != policy.version
