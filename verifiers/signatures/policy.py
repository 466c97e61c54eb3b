"""Who is trusted to sign what: the ``signatures`` verifier's options, and the checks they make.

Settings (:mod:`settings`) are validated at start-up; every error names its field. Trust is per
repository pattern, most specific pattern first. A rule composes small checks the way
sigstore-python composes verification policies: :class:`AllOf` of a threshold and the required
signers; an empty ``AllOf`` fails on purpose, so a rule can never mean "allow" by accident.
A signature counts only when it verifies as one of the rule's own signers.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from pydantic import ValidationError

from verifiers.signatures.errors import SignatureConfigError
from verifiers.signatures.keys import KeyFormatError, PublicKey
from verifiers.signatures.notation.revocation import Crls
from verifiers.signatures.notation.settings import NotationSettings, TrustPolicyDocument
from verifiers.signatures.notation.trustpolicy import (
    NotationPolicy,
    NotationTrust,
    compile_trust,
)
from verifiers.signatures.settings import PLACEHOLDER, SignatureSettings, SignerSettings
from verifiers.signatures.trust import TrustRoot, TrustRootError

# -- compiled ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """An exact value or a regular expression matched against the whole value."""

    exact: str | None
    pattern: re.Pattern[str] | None

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.pattern is not None:
            return self.pattern.fullmatch(value) is not None
        return value == self.exact

    def describe(self) -> str:
        return f"~{self.pattern.pattern}" if self.pattern else str(self.exact)


@dataclass(frozen=True)
class Signer:
    """A trusted signer, ready to match: a key, an identity plus issuer, or a Notation trust
    policy (its trust stores and trusted identities)."""

    name: str
    key: PublicKey | None = None
    identity: Matcher | None = None
    issuer: Matcher | None = None
    notation: NotationPolicy | None = None

    @property
    def kind(self) -> str:
        if self.key is not None:
            return "key"
        return "notation" if self.notation is not None else "keyless"

    def describe(self) -> str:
        if self.key is not None:
            return self.key.describe()
        if self.notation is not None:
            return self.notation.describe()
        assert self.identity is not None and self.issuer is not None
        return f"keyless {self.identity.describe()} (issuer {self.issuer.describe()})"


class SignerCheck(Protocol):
    """One requirement on the set of trusted signers that signed; None when it holds."""

    def failure(self, signed_by: frozenset[str]) -> tuple[str, str] | None: ...


@dataclass(frozen=True)
class Threshold:
    """At least ``count`` distinct signers of ``of`` signed ("2 of these 3")."""

    count: int
    of: tuple[str, ...]

    def failure(self, signed_by: frozenset[str]) -> tuple[str, str] | None:
        got = sorted(signed_by & set(self.of))
        if len(got) >= self.count:
            return None
        if not got:
            return ("signature.none-trusted", "no trusted signature")
        return (
            "signature.threshold-not-met",
            f"{self.count} of {len(self.of)} trusted signers must sign; "
            f"{len(got)} did ({', '.join(got)})",
        )


@dataclass(frozen=True)
class Required:
    """``signer`` must be among those who signed ("release-bot must always sign")."""

    signer: str

    def failure(self, signed_by: frozenset[str]) -> tuple[str, str] | None:
        if self.signer in signed_by:
            return None
        return ("signature.required-signer-missing", f"required signer {self.signer} did not sign")


@dataclass(frozen=True)
class AllOf:
    """Every check must hold; no checks at all is a failure, never an allow."""

    checks: tuple[SignerCheck, ...]

    def failures(self, signed_by: frozenset[str]) -> list[tuple[str, str]]:
        if not self.checks:
            return [("signature.no-requirement", "the rule requires nothing, so it allows nothing")]
        return [f for check in self.checks if (f := check.failure(signed_by)) is not None]


@dataclass(frozen=True)
class Rule:
    """The requirements for one repository pattern, with its signers resolved."""

    name: str
    patterns: tuple[str, ...]
    signed: bool
    signers: tuple[Signer, ...]
    threshold: int
    required: tuple[str, ...]
    require_tlog: bool
    references: tuple[str, ...]
    signature_repository: str | None = None
    """Template of the repository holding the signatures; None: the image's own."""

    def signatures_in(self, repository: str) -> str:
        """Where the signatures of an image of ``repository`` are stored."""
        if self.signature_repository is None:
            return repository
        return self.signature_repository.replace(PLACEHOLDER, repository)

    @property
    def keys(self) -> list[Signer]:
        return [s for s in self.signers if s.key is not None]

    @property
    def identities(self) -> list[Signer]:
        return [s for s in self.signers if s.identity is not None]

    @property
    def notation_signers(self) -> list[Signer]:
        return [s for s in self.signers if s.notation is not None]

    def waived(self, notation: NotationTrust | None, repository: str) -> list[Signer]:
        """Notation signers whose trust policy applies here at level ``skip``: Notation verifies
        nothing for these repositories, so they count as signed (the documented meaning)."""
        policy = notation.select(repository) if notation is not None else None
        if policy is None or not policy.skipped:
            return []
        return [s for s in self.signers if s.notation is not None and s.notation is policy]

    def requirement(self) -> AllOf:
        names = tuple(s.name for s in self.signers)
        checks: list[SignerCheck] = [Threshold(self.threshold, names)]
        checks += [Required(name) for name in self.required]
        return AllOf(tuple(checks))

    def describe(self) -> str:
        if not self.signed:
            return f"rule {self.name}: no signature required"
        required = f", always {', '.join(self.required)}" if self.required else ""
        tlog = "transparency log required" if self.require_tlog else "transparency log optional"
        stored = f"; signatures in {self.signature_repository}" if self.signature_repository else ""
        return (
            f"rule {self.name}: {self.threshold} of {len(self.signers)} signers{required}; "
            f"{tlog}{stored}"
        )


@dataclass(frozen=True)
class TrustPolicy:
    """Everything the verifier trusts, compiled from :class:`SignatureSettings`."""

    rules: tuple[Rule, ...]
    trust_root: TrustRoot
    max_payload_bytes: int
    max_signatures: int
    fingerprint: str
    """Short hash of the settings (and of the Notation trust material they point at): results
    computed under other settings are not reused."""
    notation: NotationTrust | None = None
    crls: Crls | None = None

    def rule_for(self, repository: str) -> Rule | None:
        """The most specific matching rule (fewest wildcards, then longest; earlier wins)."""
        best: tuple[tuple[int, int, int], Rule] | None = None
        for index, rule in enumerate(self.rules):
            for pattern in rule.patterns:
                if fnmatch.fnmatchcase(repository, pattern):
                    wildcards = sum(pattern.count(c) for c in "*?[")
                    key = (-wildcards, len(pattern), -index)
                    if best is None or key > best[0]:
                        best = (key, rule)
        return best[1] if best else None


def load_policy(options: dict[str, Any]) -> TrustPolicy:
    """Validate and compile the options; raises SignatureConfigError naming each bad field."""
    try:
        settings = SignatureSettings.model_validate(options)
    except ValidationError as exc:
        raise SignatureConfigError(_describe(exc)) from exc
    notation, crls, material = _load_notation(settings.notation)
    signers = {s.name: _compile_signer(i, s, notation) for i, s in enumerate(settings.signers)}
    try:
        trust_root = TrustRoot.load(settings.trusted_root)
    except TrustRootError as exc:
        raise SignatureConfigError(f"trusted_root: {exc}") from exc
    rules = tuple(
        Rule(
            name=r.name,
            patterns=tuple(r.repositories),
            signed=r.signed,
            signers=tuple(signers[name] for name in dict.fromkeys(r.signers)),
            threshold=r.threshold,
            required=tuple(r.required),
            require_tlog=r.require_tlog,
            references=tuple(r.references),
            signature_repository=r.signature_repository,
        )
        for r in settings.rules
    )
    canonical = json.dumps(_dump(settings), sort_keys=True).encode()
    return TrustPolicy(
        rules=rules,
        trust_root=trust_root,
        max_payload_bytes=settings.max_payload_bytes,
        max_signatures=settings.max_signatures,
        fingerprint=hashlib.sha256(canonical + material).hexdigest()[:12],
        notation=notation,
        crls=crls,
    )


def _dump(settings: SignatureSettings) -> dict[str, Any]:
    """The settings as JSON, without the Notation fields while unset: settings written before
    Notation support keep their fingerprint, so their results stay valid."""
    data = settings.model_dump(mode="json")
    if data.get("notation") is None:
        data.pop("notation", None)
    for signer in data["signers"]:
        if signer.get("notation_policy") is None:
            signer.pop("notation_policy", None)
    return data


def _load_notation(
    spec: NotationSettings | None,
) -> tuple[NotationTrust | None, Crls | None, bytes]:
    """The compiled trust policy, the CRLs, and the bytes of every file they were read from
    (certificates, policy file, CRLs) for the fingerprint: a changed trust store re-verifies."""
    if spec is None:
        return None, None, b""
    document = spec.trust_policy
    policy_raw = b""
    if spec.trust_policy_file is not None:
        try:
            policy_raw = spec.trust_policy_file.read_bytes()
            document = TrustPolicyDocument.model_validate_json(policy_raw)
        except OSError as exc:
            raise SignatureConfigError(
                f"notation.trust_policy_file: cannot read {spec.trust_policy_file}: "
                f"{exc.strerror or exc}"
            ) from exc
        except ValidationError as exc:
            raise SignatureConfigError(
                "\n".join(
                    f"notation.trust_policy_file: {line}" for line in _describe(exc).splitlines()
                )
            ) from exc
    assert document is not None
    trust = compile_trust(document, spec.trust_store, spec.registry_hosts)
    crls = Crls.load(spec.crl_files)
    material = hashlib.sha256(policy_raw)
    for policy in trust.policies:
        for cert in policy.certificates():
            material.update(cert.fingerprint(hashes.SHA256()))
    for crl in crls.crls:
        material.update(crl.fingerprint(hashes.SHA256()))
    return trust, crls, material.digest()


def _compile_signer(index: int, spec: SignerSettings, notation: NotationTrust | None) -> Signer:
    where = f"signers.{index}"
    if spec.notation_policy is not None:
        policy = notation.named(spec.notation_policy) if notation is not None else None
        if policy is None:
            known = ", ".join(p.name for p in notation.policies) if notation else "none"
            raise SignatureConfigError(
                f"{where}.notation_policy: no Notation trust policy named "
                f"{spec.notation_policy!r} (configured: {known})"
            )
        return Signer(spec.name, notation=policy)
    if spec.key is not None or spec.key_file is not None:
        if spec.key_file is not None:
            try:
                pem = spec.key_file.read_bytes()
            except OSError as exc:
                raise SignatureConfigError(
                    f"{where}.key_file: cannot read {spec.key_file}: {exc.strerror or exc}"
                ) from exc
            field = "key_file"
        else:
            pem, field = (spec.key or "").encode(), "key"
        try:
            return Signer(spec.name, key=PublicKey.from_pem(pem))
        except KeyFormatError as exc:
            raise SignatureConfigError(f"{where}.{field}: {exc}") from exc
    return Signer(
        spec.name,
        identity=_matcher(spec.identity, spec.identity_regex),
        issuer=_matcher(spec.issuer, spec.issuer_regex),
    )


def _matcher(exact: str | None, pattern: str | None) -> Matcher:
    return Matcher(exact, re.compile(pattern) if pattern is not None else None)


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"{field}: {message}" if field else message)
    return "\n".join(lines)
