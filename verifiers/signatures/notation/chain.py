"""The signing certificate chain, as the Notary Project signature specification checks it.

The envelope carries the whole chain, signing certificate first and root last. Checked here,
independently of any trust store: (1) each certificate is issued by the next and the last is
self-signed (an unrelated or misordered certificate fails); (2) the certificate requirements
(basic constraints, key usage, extended key usage, key sizes, no SHA-1); then (3) some
certificate of the chain is in one of the policy's named stores; and (4) every certificate is
valid over the authentic signing time (a range, for a timestamp) or now. Only basic
constraints, key usage and extended key usage are honoured; the specification says other
extensions must not be evaluated, so this is not a WebPKI path builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from verifiers.signatures.errors import StepFailed
from verifiers.signatures.notation.truststore import NamedStore

CODE_SIGNING = "code signing"
TIMESTAMPING = "timestamping"
_FORBIDDEN_EKU = {
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    ExtendedKeyUsageOID.SERVER_AUTH,
    ExtendedKeyUsageOID.CLIENT_AUTH,
    ExtendedKeyUsageOID.EMAIL_PROTECTION,
    ExtendedKeyUsageOID.TIME_STAMPING,
}


def _invalid(detail: str) -> StepFailed:
    return StepFailed("notation.certificate-invalid", detail)


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def check_order(chain: Sequence[x509.Certificate]) -> None:
    """(1) Each certificate is signed by the next; the last is a self-signed root."""
    for child, parent in zip(chain, [*chain[1:], chain[-1]], strict=True):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            what = "is not self-signed" if child is parent else f"is not issued by {_name(parent)}"
            raise _invalid(
                f"the chain must run from the signing certificate to a root: {_name(child)} "
                f"{what} ({exc.__class__.__name__})"
            ) from exc


def check_requirements(chain: Sequence[x509.Certificate], purpose: str) -> None:
    """(2) The specification's certificate requirements for ``purpose``."""
    for cert in chain:
        if isinstance(cert.signature_hash_algorithm, hashes.SHA1):
            raise _invalid(f"{_name(cert)} is signed with SHA-1")
        _key_size(cert)
    leaf, cas = chain[0], chain[1:]
    _leaf(leaf, purpose)  # a lone self-signed certificate meets the leaf requirements too
    for depth, ca in enumerate(cas):
        _ca(ca, depth, purpose)


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension | None:  # type: ignore[type-arg]
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def _key_size(cert: x509.Certificate) -> None:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise _invalid(f"{_name(cert)} has an RSA key of {key.key_size} bits (2048 at least)")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
        raise _invalid(f"{_name(cert)} has an EC key of {key.curve.key_size} bits")
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise _invalid(f"{_name(cert)} has a key that is neither RSA nor ECDSA")


def _leaf(cert: x509.Certificate, purpose: str) -> None:
    basic = _extension(cert, x509.BasicConstraints)
    if basic is not None and basic.value.ca:
        raise _invalid(f"the {purpose} certificate {_name(cert)} is a CA certificate")
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or (purpose == CODE_SIGNING and not usage.critical):
        raise _invalid(f"the {purpose} certificate has no critical keyUsage extension")
    ku = usage.value
    if not ku.digital_signature:
        raise _invalid(f"the {purpose} certificate's keyUsage lacks digitalSignature")
    if ku.key_encipherment or ku.data_encipherment or ku.key_agreement:
        raise _invalid(f"the {purpose} certificate's keyUsage allows encipherment or agreement")
    if ku.key_cert_sign or ku.crl_sign:
        raise _invalid(f"the {purpose} certificate's keyUsage allows signing certificates")
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if purpose == TIMESTAMPING:
        if (
            eku is None
            or not eku.critical
            or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]
        ):
            raise _invalid("the timestamping certificate's extendedKeyUsage is not timeStamping")
    elif eku is not None and set(eku.value) & _FORBIDDEN_EKU:
        raise _invalid(
            "the signing certificate's extendedKeyUsage allows other uses than code signing"
        )


def _ca(cert: x509.Certificate, depth: int, purpose: str) -> None:
    basic = _extension(cert, x509.BasicConstraints)
    if basic is None or not basic.critical or not basic.value.ca:
        raise _invalid(f"{_name(cert)} is not a CA (critical basicConstraints cA=true)")
    limit = basic.value.path_length
    if limit is not None and depth > limit:
        raise _invalid(f"{_name(cert)} allows {limit} intermediates below it, the chain has more")
    usage = _extension(cert, x509.KeyUsage)
    if usage is None or (purpose == CODE_SIGNING and not usage.critical):
        raise _invalid(f"{_name(cert)} has no critical keyUsage extension")
    if not usage.value.key_cert_sign:
        raise _invalid(f"{_name(cert)} keyUsage lacks keyCertSign")


def trusted_by(chain: Sequence[x509.Certificate], stores: Sequence[NamedStore]) -> str:
    """(3) Some certificate of the chain is in a named store; returns which, for the trail."""
    for store in stores:
        for trusted in store.certificates:
            if any(cert == trusted for cert in chain):
                return f"{store.label} ({_name(trusted)})"
    names = ", ".join(s.label for s in stores) or "none"
    raise StepFailed(
        "notation.untrusted-certificate",
        f"the chain (root {_name(chain[-1])}) leads to no certificate of the trust stores {names}",
    )


def check_validity(chain: Sequence[x509.Certificate], lower: datetime, upper: datetime) -> None:
    """(4) Every certificate is valid over [lower, upper] (one moment when they are equal)."""
    for cert in chain:
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if not (start <= lower and upper <= end):
            when = (
                f"{lower:%Y-%m-%dT%H:%M:%SZ}"
                if lower == upper
                else f"{lower:%Y-%m-%dT%H:%M:%SZ} to {upper:%Y-%m-%dT%H:%M:%SZ}"
            )
            raise StepFailed(
                "notation.certificate-expired",
                f"{_name(cert)} is valid {start:%Y-%m-%dT%H:%M:%SZ} to {end:%Y-%m-%dT%H:%M:%SZ}, "
                f"not at {when}",
            )


def expired_at(chain: Sequence[x509.Certificate], moment: datetime) -> bool:
    return any(cert.not_valid_after_utc < moment for cert in chain)
