"""Public keys a signer is trusted by: PEM (``cosign.pub``) inline or from a file.

Supported: ECDSA P-256, P-384 and P-521 (DER signatures, the curve's hash: what cosign and
sigstore produce), Ed25519, and RSA of at least 2048 bits (PKCS#1 v1.5 or PSS, SHA-256).
:meth:`PublicKey.check` tells a signature that does not verify from one that is not even
well-formed for the key (truncated DER, wrong length), so findings can say which.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

from verifiers.signatures.errors import SignatureError

AnyKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
MIN_RSA_BITS = 2048


class KeyFormatError(SignatureError, ValueError):
    """Not a usable public key; the message says why (it never contains key material)."""


class Check(enum.Enum):
    """How a signature fared against one key."""

    VALID = "valid"
    INVALID = "invalid"
    """Well-formed, but not made by this key over these bytes."""
    MALFORMED = "malformed"
    """Cannot be a signature of this key type at all (truncated DER, wrong length)."""


@dataclass(frozen=True)
class PublicKey:
    """A verifying key with a stable id (SHA-256 of its DER SubjectPublicKeyInfo, as Sigstore
    computes log and key ids)."""

    key: AnyKey
    key_id: str
    """``sha256:<hex>`` of the DER SubjectPublicKeyInfo."""

    @classmethod
    def from_pem(cls, pem: bytes) -> PublicKey:
        try:
            loaded = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(f"not a PEM public key ({exc.__class__.__name__})") from exc
        return cls.from_key(loaded)

    @classmethod
    def from_der(cls, der: bytes) -> PublicKey:
        try:
            loaded = serialization.load_der_public_key(der)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(f"not a DER public key ({exc.__class__.__name__})") from exc
        return cls.from_key(loaded)

    @classmethod
    def from_key(cls, key: object) -> PublicKey:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if key.curve.name not in _CURVE_HASH:
                raise KeyFormatError(f"unsupported curve {key.curve.name}")
        elif isinstance(key, rsa.RSAPublicKey):
            if key.key_size < MIN_RSA_BITS:
                raise KeyFormatError(f"RSA key of {key.key_size} bits; at least 2048 needed")
        elif not isinstance(key, ed25519.Ed25519PublicKey):
            raise KeyFormatError(f"unsupported key type {type(key).__name__}")
        return cls(key, "sha256:" + hashlib.sha256(spki_der(key)).hexdigest())

    @property
    def kind(self) -> str:
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            return f"ECDSA {_CURVE_NAMES[self.key.curve.name]}"
        if isinstance(self.key, rsa.RSAPublicKey):
            return f"RSA-{self.key.key_size}"
        return "Ed25519"

    def describe(self) -> str:
        return f"{self.kind} key {self.key_id[:19]}"

    def same_key(self, other: object) -> bool:
        """True when ``other`` (a key of any supported type) is this key."""
        return isinstance(other, AnyKey) and spki_der(other) == spki_der(self.key)

    def check(self, signature: bytes, data: bytes) -> Check:
        """Verify ``signature`` over the exact bytes ``data``."""
        key = self.key
        if isinstance(key, ec.EllipticCurvePublicKey):
            if not _is_der_ecdsa(signature):
                return Check.MALFORMED
            algorithms = [_CURVE_HASH[key.curve.name](), hashes.SHA256()]
            for algorithm in algorithms:
                try:
                    key.verify(signature, data, ec.ECDSA(algorithm))
                    return Check.VALID
                except InvalidSignature:
                    continue
            return Check.INVALID
        if isinstance(key, ed25519.Ed25519PublicKey):
            if len(signature) != 64:
                return Check.MALFORMED
            try:
                key.verify(signature, data)
                return Check.VALID
            except InvalidSignature:
                return Check.INVALID
        return _check_rsa(key, signature, data)

    def check_prehashed(self, signature: bytes, sha256: bytes) -> Check:
        """Verify a signature over a SHA-256 digest (Sigstore message signatures). Ed25519
        signs whole messages, never digests, so it can only be ``INVALID`` here."""
        key = self.key
        prehashed = utils.Prehashed(hashes.SHA256())
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                if not _is_der_ecdsa(signature):
                    return Check.MALFORMED
                key.verify(signature, sha256, ec.ECDSA(prehashed))
            elif isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, sha256, padding.PKCS1v15(), prehashed)
            else:
                return Check.INVALID
        except InvalidSignature:
            return Check.INVALID
        return Check.VALID


def spki_der(key: object) -> bytes:
    assert isinstance(key, AnyKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_der_ecdsa(signature: bytes) -> bool:
    """A strict DER ``SEQUENCE { r INTEGER, s INTEGER }``: a truncated or padded signature is
    malformed rather than merely wrong."""
    try:
        r, s = utils.decode_dss_signature(signature)
    except ValueError:
        return False
    return utils.encode_dss_signature(r, s) == signature


def _check_rsa(key: rsa.RSAPublicKey, signature: bytes, data: bytes) -> Check:
    if len(signature) != (key.key_size + 7) // 8:
        return Check.MALFORMED
    paddings: list[padding.AsymmetricPadding] = [
        padding.PKCS1v15(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
    ]
    for pad in paddings:
        try:
            key.verify(signature, data, pad, hashes.SHA256())
            return Check.VALID
        except InvalidSignature:
            continue
    return Check.INVALID
