"""The keys tokens are signed and verified with, each named by its ``kid``.

One key signs; every key whose tokens may still be alive verifies. A rotation adds a key and
keeps the previous one verifying until the last token it signed has expired (the overlap), so
rotating never logs anyone out. The ``kid`` is the key's RFC 7638 JWK thumbprint: derived from
the public key alone, every replica names the same key the same way, whatever its source.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class KeyFormatError(Exception):
    """A key is not an EC P-256 key in PEM; the message says which and why."""


def _b64(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()


def key_id(public: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 thumbprint of the key as a JWK (``crv``, ``kty``, ``x``, ``y``, sorted)."""
    numbers = public.public_numbers()
    jwk = {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x), "y": _b64(numbers.y)}
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def generate() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _p256(key: object, what: str) -> None:
    curve = getattr(key, "curve", None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or (
        curve is None or curve.name != "secp256r1"
    ):
        raise KeyFormatError(f"{what} is not an EC P-256 key")


def private_from_pem(data: bytes, what: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"{what} is not an unencrypted PEM private key") from exc
    _p256(key, what)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def public_from_pem(data: bytes, what: str) -> ec.EllipticCurvePublicKey:
    """A public key, or the public half of a private one (either may be given)."""
    if b"PRIVATE KEY" in data:
        return private_from_pem(data, what).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"{what} is not a PEM public key") from exc
    _p256(key, what)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def public_pem(public: ec.EllipticCurvePublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass(frozen=True)
class Keyring:
    """The key in use and every key tokens are accepted from."""

    signing_kid: str
    signing: ec.EllipticCurvePrivateKey = field(repr=False)
    verifying: Mapping[str, ec.EllipticCurvePublicKey] = field(repr=False)

    @classmethod
    def of(
        cls,
        signing: ec.EllipticCurvePrivateKey,
        others: list[ec.EllipticCurvePublicKey] | tuple[ec.EllipticCurvePublicKey, ...] = (),
    ) -> Keyring:
        public = signing.public_key()
        verifying = {key_id(key): key for key in others}
        verifying[key_id(public)] = public
        return cls(key_id(public), signing, verifying)
