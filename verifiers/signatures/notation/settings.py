"""Notation's trust policy and trust store, as the ``signatures`` verifier's options.

``[verifiers.signatures.options.notation]`` holds what Notation keeps in its configuration
directory: the trust store (the same ``x509/{ca,signingAuthority,tsa}/<name>/`` layout, so a
``notation cert add`` directory can be copied as it is), the trust policy (inline, or Notation's
own ``trustpolicy.json`` as a file) and the CRL files used for revocation. The trust policy keeps
Notation's field names (``registryScopes``, ``signatureVerification``, ``trustStores``,
``trustedIdentities``), so errors name the field a Notation user knows.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from verifiers.signatures.notation.identity import IdentityError, parse_identity

Level = Literal["strict", "permissive", "audit", "skip"]
Action = Literal["enforce", "log", "skip"]
StoreType = Literal["ca", "signingAuthority", "tsa"]
STORE_TYPES: tuple[StoreType, ...] = ("ca", "signingAuthority", "tsa")
GLOBAL = "*"
_STORE_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SignatureVerificationSettings(_Model):
    """``signatureVerification``: a level, optionally overridden per validation."""

    level: Level
    override: dict[
        Literal["authenticity", "authenticTimestamp", "expiry", "revocation"], Action
    ] = Field(default_factory=dict)
    """Custom verification level; ``integrity`` cannot be overridden, only ``revocation`` can be
    ``skip``."""
    verify_timestamp: Literal["always", "afterCertExpiry"] = Field(
        default="always", alias="verifyTimestamp"
    )
    """``afterCertExpiry``: check the RFC 3161 countersignature only once a certificate of the
    signing chain has expired."""

    @model_validator(mode="after")
    def _overrides(self) -> Self:
        if self.override and self.level == "skip":
            raise ValueError("override: the skip level cannot be customised")
        for key, action in self.override.items():
            if action == "skip" and key != "revocation":
                raise ValueError(f"override.{key}: only revocation can be skip")
        return self


class TrustPolicyStatement(_Model):
    """One entry of ``trustPolicies``: which signatures Notation trusts for which repositories."""

    name: str = Field(min_length=1, max_length=100)
    registry_scopes: list[str] = Field(alias="registryScopes", min_length=1)
    """Fully qualified repositories (``registry.example.com/prod/app``) or the single ``*``."""
    signature_verification: SignatureVerificationSettings = Field(alias="signatureVerification")
    trust_stores: list[str] = Field(default_factory=list, alias="trustStores")
    """Named stores as ``{type}:{name}``, type ``ca``, ``signingAuthority`` or ``tsa``."""
    trusted_identities: list[str] = Field(default_factory=list, alias="trustedIdentities")
    """``x509.subject: C=.., ST=.., O=..[, ...]`` or the single ``*``."""

    @field_validator("registry_scopes")
    @classmethod
    def _scopes(cls, scopes: list[str]) -> list[str]:
        if GLOBAL in scopes and len(scopes) > 1:
            raise ValueError("the global scope '*' must be the only scope of its policy")
        for scope in scopes:
            if scope != GLOBAL and ("*" in scope or "/" not in scope):
                raise ValueError(
                    f"{scope!r}: a scope is a fully qualified repository "
                    "(registry.example.com/team/app) without '*', or the single '*'"
                )
        if len(set(scopes)) != len(scopes):
            raise ValueError("a scope may appear only once")
        return scopes

    @field_validator("trust_stores")
    @classmethod
    def _stores(cls, stores: list[str]) -> list[str]:
        for store in stores:
            kind, sep, name = store.partition(":")
            if not sep or kind not in STORE_TYPES or not _STORE_NAME.fullmatch(name):
                raise ValueError(
                    f"{store!r} is not {{type}}:{{name}} with type ca, signingAuthority or tsa"
                )
        return stores

    @field_validator("trusted_identities")
    @classmethod
    def _identities(cls, identities: list[str]) -> list[str]:
        if GLOBAL in identities and len(identities) > 1:
            raise ValueError("'*' must be the only trusted identity")
        parsed = []
        for value in identities:
            if value == GLOBAL:
                continue
            try:
                parsed.append(parse_identity(value))
            except IdentityError as exc:
                raise ValueError(f"{value!r}: {exc}") from exc
        for index, first in enumerate(parsed):
            for second in parsed[index + 1 :]:
                if first.overlaps(second):
                    raise ValueError(
                        f"{first.text!r} and {second.text!r} overlap: one certificate could "
                        "match both"
                    )
        return identities

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        level = self.signature_verification.level
        if level == "skip":
            if self.trust_stores or self.trusted_identities:
                raise ValueError("a skip policy takes no trustStores or trustedIdentities")
            if GLOBAL in self.registry_scopes:
                raise ValueError("the skip level cannot be used with the global scope '*'")
            return self
        if not any(s.split(":", 1)[0] in ("ca", "signingAuthority") for s in self.trust_stores):
            raise ValueError("trustStores: name at least one ca or signingAuthority store")
        if not self.trusted_identities:
            raise ValueError("trustedIdentities: name at least one identity, or '*'")
        return self

    @property
    def is_global(self) -> bool:
        return self.registry_scopes == [GLOBAL]


class TrustPolicyDocument(_Model):
    """Notation's ``trustpolicy.json`` (OCI trust policy, version 1.0)."""

    version: Literal["1.0"]
    trust_policies: list[TrustPolicyStatement] = Field(alias="trustPolicies", min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [p.name for p in self.trust_policies]
        if len(set(names)) != len(names):
            raise ValueError("trustPolicies: each name may appear only once")
        if sum(p.is_global for p in self.trust_policies) > 1:
            raise ValueError("trustPolicies: only one policy may use the global scope '*'")
        seen: dict[str, str] = {}
        for policy in self.trust_policies:
            for scope in policy.registry_scopes:
                if scope != GLOBAL and scope in seen:
                    raise ValueError(
                        f"trustPolicies: scope {scope!r} is in both {seen[scope]} and {policy.name}"
                    )
                seen[scope] = policy.name
        return self


class NotationSettings(_Model):
    """``[verifiers.signatures.options.notation]``."""

    trust_store: Path
    """Notation's trust store directory: ``x509/<type>/<name>/*.pem|crt|cer``."""
    trust_policy: TrustPolicyDocument | None = None
    """The trust policy inline (``version``, ``trustPolicies``)."""
    trust_policy_file: Path | None = None
    """Or Notation's ``trustpolicy.json`` (``trustpolicy.oci.json``) as a file."""
    registry_hosts: list[str] = Field(default_factory=list)
    """The names clients use for this gatekeeper (``registry.example.com``, ``host:5000``):
    a scope ``registry.example.com/prod/app`` covers repository ``prod/app`` here."""
    crl_files: list[Path] = Field(default_factory=list)
    """CRLs (DER or PEM) for revocation checks; none: revocation is not checked."""

    @model_validator(mode="after")
    def _one_policy(self) -> Self:
        if (self.trust_policy is None) == (self.trust_policy_file is None):
            raise ValueError("set exactly one of trust_policy and trust_policy_file")
        return self
