"""The ``signatures`` verifier: is this image signed by enough of the signers the policy trusts?

For each image: find the rule for its repository; find every signature (cosign tag, referrers)
in the image's repository or the rule's signature repository;
check each one step by step; then ask the rule whether the trusted signers that verified are
enough (threshold, required signers). The verdict's reason comes from the findings' rule ids:
``signature.none-trusted``, ``signature.threshold-not-met``, ... plus one finding per
signature that failed, whose title names the step.

A signature that fails while the rule is nevertheless satisfied (junk pushed beside a valid
signature) is reported as a low finding: it does not block, and it is not hidden either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from verifiers.artifacts import artifact_reason
from verifiers.base import Finding, Image, Severity, Skipped
from verifiers.registry_names import RegistryNames
from verifiers.signatures.context import Context
from verifiers.signatures.cosign import signature_tag
from verifiers.signatures.policy import Rule, TrustPolicy, load_policy
from verifiers.signatures.referrers import discover
from verifiers.signatures.steps import Checked

NAME = "signatures"


@dataclass(frozen=True)
class Report:
    """Everything one verification established, for findings and for ``gatekeeper verify``."""

    repository: str
    digest: str
    rule: Rule | None
    checked: tuple[Checked, ...]
    notes: tuple[str, ...]
    failures: tuple[tuple[str, str], ...]
    """Rule-level failures: (rule id, title)."""

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def signed_by(self) -> frozenset[str]:
        return frozenset(c.signer for c in self.checked if c.signer)

    def findings(self, verifier: str) -> list[Finding]:
        where = f"{self.repository}@{self.digest}"
        found = [
            Finding(verifier, rule, Severity.CRITICAL, title, where, "; ".join(self.notes))
            for rule, title in self.failures
        ]
        severity = Severity.LOW if self.passed else Severity.HIGH
        for checked in self.checked:
            if checked.failure is not None:
                failure = checked.failure
                found.append(
                    Finding(
                        verifier,
                        failure.rule,
                        severity,
                        f"step '{failure.step}' failed: {failure.detail}",
                        checked.source,
                    )
                )
        return found


class SignatureVerifier:
    """Checks cosign signatures and Sigstore bundles against the configured trust."""

    name = NAME

    def __init__(self, options: dict[str, Any]) -> None:
        self.policy: TrustPolicy = load_policy(options)
        self.know_registry(RegistryNames(frozenset()))

    def know_registry(self, names: RegistryNames) -> None:
        """The registry's own names (``verifiers.registry_names.KnowsRegistry``). Until told,
        it knows none, so no cosign signature names this registry: fail closed."""
        self.registry = names
        self.version = f"2-{self.policy.fingerprint}-{names.fingerprint}"

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        report = await self.examine(image)
        if isinstance(report, Skipped):
            return report
        return report.findings(self.name)

    async def examine(self, image: Image, now: datetime | None = None) -> Report | Skipped:
        reason = artifact_reason(image)
        if reason:
            return Skipped(reason)
        rule = self.policy.rule_for(image.repository)
        if rule is None:
            title = f"no trusted signature: no signature rule covers {image.repository}"
            return Report(
                image.repository, image.digest, None, (), (), (("signature.no-rule", title),)
            )
        if not rule.signed:
            return Skipped(f"rule {rule.name} lets {image.repository} be unsigned")
        store = await image.repository_view(rule.signatures_in(image.repository))
        ctx = Context(
            repository=image.repository,
            digest=image.digest,
            rule=rule,
            trust=self.policy.trust_root,
            blobs=store.blobs,
            max_payload_bytes=self.policy.max_payload_bytes,
            now=now or datetime.now(UTC),
            registry=self.registry,
        )
        candidates, notes = await discover(image, store, self.policy.max_signatures)
        if store.name != image.repository:
            notes.insert(0, f"signatures are stored in {store.name} (rule {rule.name})")
        checked = tuple([await candidate.check(ctx) for candidate in candidates])
        signed_by = frozenset(c.signer for c in checked if c.signer)
        failures = tuple(
            (rule_id, _title(rule_id, title, checked, image, store.name, rule))
            for rule_id, title in rule.requirement().failures(signed_by)
        )
        return Report(image.repository, image.digest, rule, checked, tuple(notes), failures)


def _title(
    rule_id: str, title: str, checked: tuple[Checked, ...], image: Image, store: str, rule: Rule
) -> str:
    if rule_id != "signature.none-trusted":
        return title
    if not checked:
        tag = signature_tag(image.digest)
        if store != image.repository:
            return (
                f"{title}: the image is not signed (no {tag} tag and no bundle referrer in "
                f"signature repository {store})"
            )
        return f"{title}: the image is not signed (no {tag} tag, no bundle referrer)"
    count = len(checked)
    return (
        f"{title}: {count} signature{'s' if count != 1 else ''} found, none valid from a "
        f"trusted signer of rule {rule.name}"
    )
