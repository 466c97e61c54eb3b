"""The ``signatures`` verifier's options (``[verifiers.signatures.options]``), as data.

Validated by pydantic at start-up; :func:`verifiers.signatures.policy.load_policy` turns them
into the compiled policy and reports every error with the field it is about.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, field_validator, model_validator

from oci.grammar import is_repository_name
from verifiers.signatures.notation.settings import NotationSettings
from verifiers.signatures.trust import PUBLIC_GOOD

PLACEHOLDER = "{repository}"
"""Stands for the image's repository in ``signature_repository`` (``sigs/{repository}``)."""


class SignerSettings(BaseModel):
    """One trusted signer: a public key, a keyless identity (certificate SAN + OIDC issuer), or a
    Notation trust policy (``notation_policy``: its trust stores and trusted identities)."""

    model_config = {"extra": "forbid", "frozen": True}

    name: str = Field(min_length=1, max_length=100)
    key: str | None = None
    """PEM public key inline (the contents of ``cosign.pub``)."""
    key_file: Path | None = None
    identity: str | None = None
    """Exact certificate identity: an email or URI subject alternative name."""
    identity_regex: str | None = None
    """Regular expression the whole identity must match (``re.fullmatch``)."""
    issuer: str | None = None
    """Exact OIDC issuer (certificate extension 1.3.6.1.4.1.57264.1.8, or .1.1)."""
    issuer_regex: str | None = None
    notation_policy: str | None = Field(default=None, min_length=1)
    """Name of a statement of ``notation.trust_policy``: a Notation signature verified under
    it counts as this signer, where Notation would apply that statement."""

    @field_validator("identity_regex", "issuer_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        keyed = (self.key is not None) + (self.key_file is not None)
        identity = (self.identity is not None) + (self.identity_regex is not None)
        issuer = (self.issuer is not None) + (self.issuer_regex is not None)
        if keyed > 1 or identity > 1 or issuer > 1:
            raise ValueError(
                "set at most one of key/key_file, identity/identity_regex, issuer/issuer_regex"
            )
        if self.notation_policy is not None:
            if keyed or identity or issuer:
                raise ValueError(
                    "a notation_policy signer takes no key, key_file, identity or issuer"
                )
            return self
        if keyed and (identity or issuer):
            raise ValueError("a signer is either a key or a keyless identity, not both")
        if not keyed and not (identity and issuer):
            raise ValueError(
                "set key or key_file, or both an identity and an issuer (exact or _regex), or "
                "a notation_policy"
            )
        return self


class RuleSettings(BaseModel):
    """Signature requirements for the repositories matching ``repositories``."""

    model_config = {"extra": "forbid", "frozen": True}

    name: str = Field(min_length=1, max_length=100)
    repositories: list[str] = Field(min_length=1)
    """Glob patterns (``prod/*``); the most specific matching rule applies."""
    signed: bool = True
    """``false``: these repositories need no signature (an explicit exemption)."""
    signers: list[str] = Field(default_factory=list)
    """Names of trusted signers; a signature by anyone else does not count."""
    threshold: int = Field(default=1, ge=1)
    """How many distinct signers of ``signers`` must have signed ("2 of these 3")."""
    required: list[str] = Field(default_factory=list)
    """Signers that must always be among them ("release-bot must always sign")."""
    require_tlog: bool = True
    """A signature counts only with a verified transparency-log proof (SET or inclusion proof)."""
    references: list[str] = Field(default_factory=list)
    """Extra ``docker-reference`` glob patterns accepted in cosign payloads (images promoted
    from another repository or registry). By default the reference must name this repository."""
    signature_repository: str | None = None
    """Where the signatures are stored, as with cosign's ``COSIGN_REPOSITORY``: a repository of
    the same registry (``sigs/prod``), or a template (``sigs/{repository}``). The
    ``sha256-<hex>.sig`` tag and the referrers are looked up there, and only there."""

    @field_validator("signature_repository")
    @classmethod
    def _repository_template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        probe = value.replace(PLACEHOLDER, "x")
        if "{" in probe or "}" in probe:
            raise ValueError(f"the only placeholder is {PLACEHOLDER}")
        if not is_repository_name(probe):
            raise ValueError(
                f"{value!r} is not a repository name: lower-case components of [a-z0-9._-] "
                "separated by '/', without the registry host"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.signed:
            if self.signature_repository is not None:
                raise ValueError("signature_repository: a rule with signed = false reads none")
            return self
        if not self.signers:
            raise ValueError(
                "signers: a signed rule needs at least one signer (or set signed = false)"
            )
        if self.threshold > len(set(self.signers)):
            raise ValueError(
                f"threshold {self.threshold} exceeds the {len(set(self.signers))} signers listed"
            )
        missing = sorted(set(self.required) - set(self.signers))
        if missing:
            raise ValueError(f"required signers {missing} are not in signers")
        return self


class SignatureSettings(BaseModel):
    """``[verifiers.signatures.options]``."""

    model_config = {"extra": "forbid", "frozen": True}

    trusted_root: str = PUBLIC_GOOD
    """``public-good`` (shipped with the ``sigstore`` package) or a ``trusted_root.json`` path."""
    signers: list[SignerSettings] = Field(default_factory=list)
    rules: list[RuleSettings] = Field(min_length=1)
    max_payload_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Largest signature payload or bundle read; a bigger one is a finding, not read."""
    max_signatures: int = Field(default=32, ge=1, le=1000)
    """Signatures examined per image at most (layers of the ``.sig`` tag plus referrers)."""
    notation: NotationSettings | None = None
    """Notary Project signatures: trust store, trust policy, CRLs (see README)."""

    @model_validator(mode="after")
    def _names(self) -> Self:
        names = [s.name for s in self.signers]
        if len(set(names)) != len(names):
            raise ValueError("signers: each name may appear only once")
        rule_names = [r.name for r in self.rules]
        if len(set(rule_names)) != len(rule_names):
            raise ValueError("rules: each name may appear only once")
        for index, rule in enumerate(self.rules):
            unknown = sorted(set(rule.signers) - set(names))
            if unknown:
                raise ValueError(f"rules.{index}.signers: unknown signers {unknown}")
        if self.notation is None:
            for index, signer in enumerate(self.signers):
                if signer.notation_policy is not None:
                    raise ValueError(
                        f"signers.{index}.notation_policy: set [notation] (trust store and "
                        "trust policy) first"
                    )
        return self
