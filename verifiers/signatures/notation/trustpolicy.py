"""The compiled Notation trust policy: which statement applies to a repository, what each
verification level enforces, and the trust stores and identities it names.

Selection follows the specification: a statement whose ``registryScopes`` names the repository
(``<registry host>/<repository>``, the host being one of ``registry_hosts``) applies; otherwise
the global ``*`` statement, if any; otherwise none, and Notation signatures are not trusted
there. Levels, as documented by the Notary Project (integrity is always enforced):

============  ============  ===================  ========  ==========
level         authenticity  authenticTimestamp   expiry    revocation
============  ============  ===================  ========  ==========
strict        enforce       enforce              enforce   enforce
permissive    enforce       log                  log       log
audit         log           log                  log       log
skip          (nothing is verified)
============  ============  ===================  ========  ==========
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from verifiers.signatures.errors import SignatureConfigError
from verifiers.signatures.notation.identity import Identity, parse_identity
from verifiers.signatures.notation.settings import (
    GLOBAL,
    TrustPolicyDocument,
    TrustPolicyStatement,
)
from verifiers.signatures.notation.truststore import NamedStore, load_store

AUTHENTICITY = "authenticity"
AUTHENTIC_TIMESTAMP = "authenticTimestamp"
EXPIRY = "expiry"
REVOCATION = "revocation"
ENFORCE, LOG, SKIP = "enforce", "log", "skip"
LEVELS: Mapping[str, Mapping[str, str]] = {
    "strict": {AUTHENTICITY: ENFORCE, AUTHENTIC_TIMESTAMP: ENFORCE, EXPIRY: ENFORCE,
               REVOCATION: ENFORCE},
    "permissive": {AUTHENTICITY: ENFORCE, AUTHENTIC_TIMESTAMP: LOG, EXPIRY: LOG, REVOCATION: LOG},
    "audit": {AUTHENTICITY: LOG, AUTHENTIC_TIMESTAMP: LOG, EXPIRY: LOG, REVOCATION: LOG},
}  # fmt: skip


@dataclass(frozen=True)
class NotationPolicy:
    """One trust policy statement, with its stores read and identities parsed."""

    name: str
    scopes: tuple[str, ...]
    level: str
    actions: Mapping[str, str]
    """Validation -> ``enforce`` / ``log`` / ``skip`` (the level with its overrides)."""
    verify_timestamp: str
    stores: tuple[NamedStore, ...]
    """``ca`` and ``signingAuthority`` stores."""
    tsa: tuple[NamedStore, ...]
    identities: tuple[Identity, ...] | None
    """None for ``*``: any certificate that chains to the stores."""

    @property
    def skipped(self) -> bool:
        return self.level == "skip"

    def action(self, validation: str) -> str:
        return self.actions.get(validation, ENFORCE)

    def stores_for(self, scheme_kind: str) -> list[NamedStore]:
        return [s for s in self.stores if s.kind == scheme_kind]

    def certificates(self) -> list[x509.Certificate]:
        return [c for s in (*self.stores, *self.tsa) for c in s.certificates]

    def describe(self) -> str:
        stores = ", ".join(s.label for s in (*self.stores, *self.tsa)) or "no trust store"
        overrides = "".join(
            f", {k} {v}" for k, v in self.actions.items() if LEVELS.get(self.level, {}).get(k) != v
        )
        return f"Notation trust policy {self.name} ({self.level}{overrides}; {stores})"


@dataclass(frozen=True)
class NotationTrust:
    """Every trust policy statement, and the registry names its scopes may use."""

    policies: tuple[NotationPolicy, ...]
    hosts: tuple[str, ...]

    def select(self, repository: str) -> NotationPolicy | None:
        """The statement Notation would apply to ``repository``: exact scope, then global."""
        wanted = {f"{host}/{repository}" for host in self.hosts}
        exact = [p for p in self.policies if wanted & set(p.scopes)]
        if exact:
            return exact[0]
        return next((p for p in self.policies if p.scopes == (GLOBAL,)), None)

    def named(self, name: str) -> NotationPolicy | None:
        return next((p for p in self.policies if p.name == name), None)


def compile_trust(
    document: TrustPolicyDocument, store_root: Path, hosts: Sequence[str]
) -> NotationTrust:
    """Read the stores each statement names; raises SignatureConfigError naming the field."""
    cache: dict[str, NamedStore] = {}
    policies = []
    for index, statement in enumerate(document.trust_policies):
        where = f"notation.trust_policy.trustPolicies.{index}"
        for scope in statement.registry_scopes:
            host = scope.split("/", 1)[0]
            if scope != GLOBAL and host not in hosts:
                raise SignatureConfigError(
                    f"{where}.registryScopes: {scope!r} names registry {host!r}, which is not "
                    "in notation.registry_hosts (the names clients use for this gatekeeper)"
                )
        stores = []
        for reference in statement.trust_stores:
            if reference not in cache:
                try:
                    cache[reference] = load_store(store_root, reference)
                except SignatureConfigError as exc:
                    raise SignatureConfigError(f"{where}.trustStores: {exc}") from exc
            stores.append(cache[reference])
        policies.append(_compile(statement, stores))
    return NotationTrust(tuple(policies), tuple(hosts))


def _compile(statement: TrustPolicyStatement, stores: list[NamedStore]) -> NotationPolicy:
    verification = statement.signature_verification
    actions = dict(LEVELS.get(verification.level, {}))
    actions.update({str(k): str(v) for k, v in verification.override.items()})
    identities = statement.trusted_identities
    return NotationPolicy(
        name=statement.name,
        scopes=tuple(statement.registry_scopes),
        level=verification.level,
        actions=actions,
        verify_timestamp=verification.verify_timestamp,
        stores=tuple(s for s in stores if s.kind != "tsa"),
        tsa=tuple(s for s in stores if s.kind == "tsa"),
        identities=None if identities == [GLOBAL] else tuple(map(parse_identity, identities)),
    )
