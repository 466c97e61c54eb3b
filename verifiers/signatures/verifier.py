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

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from verifiers.base import Finding, Image, Noted, RepositoryView, Severity, Skipped
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

    waived: frozenset[str] = frozenset()
    """Notation signers whose trust policy is level ``skip`` here: they count unverified."""

    def found(self) -> list[str]:
        """Each signature examined and what it came to (its signer, or the rule it failed),
        so a rule-level finding says what was found, not only what was missing."""
        return [
            f"{c.source}: "
            + (
                f"signed by {c.signer}"
                if c.signer
                else c.failure.rule
                if c.failure
                else "no signer"
            )
            for c in self.checked
        ]

    @property
    def signed_by(self) -> frozenset[str]:
        return frozenset(c.signer for c in self.checked if c.signer) | self.waived

    def findings(self, verifier: str) -> list[Finding]:
        where = f"{self.repository}@{self.digest}"
        evidence = "; ".join([*self.found(), *self.notes])
        found = [
            Finding(verifier, rule, Severity.CRITICAL, title, where, evidence)
            for rule, title in self.failures
        ]
        severity = Severity.LOW if self.passed else Severity.HIGH
        for checked in self.checked:
            found += [
                Finding(
                    verifier,
                    logged.rule,
                    Severity.LOW,
                    f"step '{logged.step}' failed, logged only (verification level): "
                    f"{logged.detail}",
                    checked.source,
                )
                for logged in checked.logged
            ]
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
    checks_indexes = True
    """cosign signs an index's own digest: indexes are checked too, not left to children."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.policy: TrustPolicy = load_policy(options)
        self.know_registry(RegistryNames(frozenset()))

    def know_registry(self, names: RegistryNames) -> None:
        """The registry's own names (``verifiers.registry_names.KnowsRegistry``). Until told,
        it knows none, so no cosign signature names this registry: fail closed."""
        self.registry = names
        self.version = f"2-{self.policy.fingerprint}-{names.fingerprint}"

    def signature_repository(self, repository: str) -> str:
        """Where the signatures of ``repository``'s images are kept under their rule."""
        rule = self.policy.rule_for(repository)
        return rule.signatures_in(repository) if rule is not None and rule.signed else repository

    async def verify(self, image: Image) -> list[Finding] | Skipped:
        report = await self.examine(image)
        if isinstance(report, Skipped):
            return report
        signers = sorted(report.signed_by)
        note = f"signed by {', '.join(signers)}" if report.passed and signers else ""
        return Noted(report.findings(self.name), note)

    async def examine(self, image: Image, now: datetime | None = None) -> Report | Skipped:
        rule = self.policy.rule_for(image.repository)
        if rule is None:
            title = f"no trusted signature: no signature rule covers {image.repository}"
            return Report(
                image.repository, image.digest, None, (), (), (("signature.no-rule", title),)
            )
        if not rule.signed:
            return Skipped(f"rule {rule.name} lets {image.repository} be unsigned", exempt=True)
        moment = now or datetime.now(UTC)
        store = await image.repository_view(rule.signatures_in(image.repository))
        report = await self._examine(image, store, rule, moment)
        if report.passed:
            return report
        for index in image.covering_indexes:
            # cosign signs an index's digest; a client then pulls one child by digest.
            fetched = await image.manifests.fetch(index)
            if fetched is None:
                continue
            view = await image.repositories.open(rule.signatures_in(image.repository), index)
            signed = replace(image, digest=index, media_type=fetched.media_type)
            through = await self._examine(signed, view, rule, moment)
            if through.passed:
                notes = (f"signed through index {index}, which lists it", *through.notes)
                return replace(through, digest=image.digest, notes=notes)
        return report

    async def _examine(
        self, image: Image, store: RepositoryView, rule: Rule, now: datetime
    ) -> Report:
        """The signatures of ``image.digest`` found in ``store``, checked against ``rule``."""
        ctx = Context(
            repository=image.repository,
            digest=image.digest,
            rule=rule,
            trust=self.policy.trust_root,
            blobs=store.blobs,
            max_payload_bytes=self.policy.max_payload_bytes,
            now=now,
            registry=self.registry,
            image_media_type=image.media_type,
            image_size=await _manifest_size(image) if rule.notation_signers else None,
            notation=self.policy.notation,
            crls=self.policy.crls,
        )
        candidates, notes = await discover(image, store, self.policy.max_signatures)
        if store.name != image.repository:
            notes.insert(0, f"signatures are stored in {store.name} (rule {rule.name})")
        checked = tuple([await candidate.check(ctx) for candidate in candidates])
        waived = rule.waived(self.policy.notation, image.repository)
        notes += [
            f"Notation trust policy {s.notation.name} is level skip for {image.repository}: "
            f"{s.name} counts without verification"
            for s in waived
            if s.notation is not None
        ]
        signed_by = frozenset(c.signer for c in checked if c.signer) | {s.name for s in waived}
        failures = tuple(
            (rule_id, _title(rule_id, title, checked, image, store.name, rule))
            for rule_id, title in rule.requirement().failures(signed_by)
        )
        return Report(
            image.repository,
            image.digest,
            rule,
            checked,
            tuple(notes),
            failures,
            frozenset(s.name for s in waived),
        )


async def _manifest_size(image: Image) -> int | None:
    """The image manifest's size in bytes, which a Notation payload must name."""
    fetched = await image.manifests.fetch(image.digest)
    return len(fetched.body) if fetched is not None else None


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
        notation = " or Notation" if rule.notation_signers else ""
        return f"{title}: the image is not signed (no {tag} tag, no bundle{notation} referrer)"
    count = len(checked)
    return (
        f"{title}: {count} signature{'s' if count != 1 else ''} found, none valid from a "
        f"trusted signer of rule {rule.name}"
    )
