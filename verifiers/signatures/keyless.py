"""Keyless signers: a short-lived Fulcio certificate that names who signed.

The certificate binds the signing key to an identity (an email or URI subject alternative
name) vouched for by an OIDC issuer (extension 1.3.6.1.4.1.57264.1.8, or the older .1.1). It
is trusted only if, at the signing time the transparency log proves:

1. it was within its validity period (Fulcio certificates live minutes);
2. it chains to a certificate authority of the trusted root that was valid then, and is a
   code-signing certificate;
3. its identity and issuer match one of the rule's keyless signers (exactly or by regular
   expression) — a valid certificate for anyone else does not count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from verifiers.signatures.errors import StepFailed
from verifiers.signatures.policy import Signer
from verifiers.signatures.trust import TrustRoot

ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
"""Raw string value (the first Fulcio profile)."""
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
"""DER UTF8String (current Fulcio)."""


@dataclass(frozen=True)
class CertIdentity:
    """Who a certificate says signed."""

    names: tuple[str, ...]
    """Email and URI subject alternative names."""
    issuer: str | None

    def describe(self) -> str:
        return f"{', '.join(self.names) or '(no identity)'} (issuer {self.issuer or 'none'})"


def identity_of(cert: x509.Certificate) -> CertIdentity:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.RFC822Name)) + tuple(
            san.get_values_for_type(x509.UniformResourceIdentifier)
        )
    except x509.ExtensionNotFound:
        names = ()
    return CertIdentity(names, _issuer(cert))


def _issuer(cert: x509.Certificate) -> str | None:
    for oid, der in ((ISSUER_V2, True), (ISSUER_V1, False)):
        try:
            ext = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        raw = getattr(ext, "value", b"")
        if der:
            raw = _utf8_string(raw)
        try:
            return raw.decode("utf-8") if raw else None
        except UnicodeDecodeError:
            return None
    return None


def _utf8_string(der: bytes) -> bytes:
    """The content of a DER UTF8String (tag 0x0c, short or long length)."""
    if len(der) < 2 or der[0] != 0x0C:
        return b""
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, offset = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
    return der[offset : offset + length] if offset + length == len(der) else b""


def check_validity(cert: x509.Certificate, at: datetime) -> None:
    """(1) The certificate was valid at the signing time."""
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise StepFailed(
            "signature.certificate-expired",
            f"the certificate was valid {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to "
            f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, not at signing time "
            f"{at:%Y-%m-%dT%H:%M:%SZ}",
        )


def check_chain(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustRoot,
    at: datetime,
) -> str:
    """(2) Chains to a CA of the trusted root valid at ``at``; returns the root's subject."""
    anchors = [c for a in trust.authorities if a.valid.contains(at) for c in a.certificates]
    if not anchors:
        raise StepFailed(
            "signature.certificate-untrusted",
            f"{trust.source} has no certificate authority valid at {at:%Y-%m-%dT%H:%M:%SZ}",
        )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(at)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(cert, list(intermediates)).chain
    except (VerificationError, x509.UnsupportedGeneralNameType) as exc:
        raise StepFailed(
            "signature.certificate-untrusted",
            f"the certificate does not chain to {trust.source}: {exc}",
        ) from exc
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.CODE_SIGNING not in usage:
        raise StepFailed(
            "signature.certificate-untrusted", "the certificate is not for code signing"
        )
    return chain[-1].subject.rfc4514_string()


def match_identity(identity: CertIdentity, signers: Sequence[Signer]) -> Signer:
    """(3) The first keyless signer whose identity and issuer both match."""
    named = [
        s for s in signers if s.identity and any(s.identity.matches(n) for n in identity.names)
    ]
    for signer in named:
        assert signer.issuer is not None
        if signer.issuer.matches(identity.issuer):
            return signer
    if named:
        raise StepFailed(
            "signature.issuer-mismatch",
            f"{identity.describe()}: the identity is trusted only from issuer "
            + " or ".join(s.issuer.describe() for s in named if s.issuer),
        )
    trusted = ", ".join(s.identity.describe() for s in signers if s.identity) or "none"
    raise StepFailed(
        "signature.identity-mismatch",
        f"signed by {identity.describe()}, not a trusted identity (trusted: {trusted})",
    )
