"""What both Notary Project envelope formats carry, once parsed, and the checks they share.

:mod:`envelope_jws` (``application/jose+json``) and :mod:`envelope_cose` (``application/cose``)
each turn their bytes into one :class:`Envelope`; everything after that (integrity, the payload,
the signing scheme, critical attributes, the chain) is the same for both. Parsing refuses an
envelope the specification calls invalid (a missing critical header, a signing time the scheme
forbids) with :class:`EnvelopeInvalid`, which the verifier reports as
``notation.envelope-invalid``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from verifiers.signatures.errors import SignatureError

MEDIA_JWS = "application/jose+json"
MEDIA_COSE = "application/cose"
PAYLOAD_TYPE = "application/vnd.cncf.notary.payload.v1+json"
SCHEME_X509 = "notary.x509"
SCHEME_AUTHORITY = "notary.x509.signingAuthority"

SIGNING_SCHEME = "io.cncf.notary.signingScheme"
SIGNING_TIME = "io.cncf.notary.signingTime"
AUTHENTIC_SIGNING_TIME = "io.cncf.notary.authenticSigningTime"
EXPIRY = "io.cncf.notary.expiry"
TIMESTAMP = "io.cncf.notary.timestampSignature"
SIGNING_AGENT = "io.cncf.notary.signingAgent"
NOTARY_HEADERS = frozenset({SIGNING_SCHEME, SIGNING_TIME, AUTHENTIC_SIGNING_TIME, EXPIRY})
"""Signed attributes the specification defines; every other one is an extended attribute."""

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_RSA = {2048: "PS256", 3072: "PS384", 4096: "PS512"}


class EnvelopeInvalid(SignatureError, ValueError):
    """The envelope is not one the specification allows; the message says which part."""


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope of either format. Nothing in it is trusted until :func:`integrity`
    has checked the signature with the first certificate's key."""

    format: str
    """``JWS`` or ``COSE``."""
    algorithm: str
    """``PS256`` ... ``ES512``: the JWS name, also for COSE's numeric ids."""
    content_type: str
    payload: bytes
    signing_scheme: str
    signing_time: datetime | None
    """``io.cncf.notary.signingTime`` (notary.x509; the signer's claim, not authentic)."""
    authentic_signing_time: datetime | None
    """``io.cncf.notary.authenticSigningTime`` (notary.x509.signingAuthority)."""
    expiry: datetime | None
    critical: tuple[str, ...]
    extended: dict[str, Any]
    """Extended signed attributes: every protected header the specification does not define."""
    certificates: tuple[x509.Certificate, ...]
    """``x5c`` / ``x5chain``: signing certificate first, root last."""
    signature: bytes
    signed: bytes
    """The exact bytes the signature covers (JWS signing input, COSE ``Sig_structure``)."""
    timestamp: bytes | None = None
    """RFC 3161 timestamp token over the signature (unprotected, notary.x509 only)."""
    signing_agent: str | None = field(default=None)

    @property
    def unknown_critical(self) -> list[str]:
        """Critical extended attributes: the gatekeeper understands none of them (they name
        verification plugins it does not run, or the signer's own semantics)."""
        return [name for name in self.critical if name not in NOTARY_HEADERS]


def check_headers(
    scheme: Any,
    critical: list[Any],
    present: set[str],
    signing_time: datetime | None,
    authentic: datetime | None,
    expiry: datetime | None,
) -> None:
    """The rules both formats share for the signing scheme and the critical list."""
    if scheme not in (SCHEME_X509, SCHEME_AUTHORITY):
        raise EnvelopeInvalid(f"unsupported signing scheme {scheme!r}")
    if scheme == SCHEME_X509:
        if authentic is not None:
            raise EnvelopeInvalid(f"{AUTHENTIC_SIGNING_TIME} is not allowed with {scheme}")
        if signing_time is None:
            raise EnvelopeInvalid(f"{SIGNING_TIME} is required with {scheme}")
    else:
        if signing_time is not None:
            raise EnvelopeInvalid(f"{SIGNING_TIME} is not allowed with {scheme}")
        if authentic is None:
            raise EnvelopeInvalid(f"{AUTHENTIC_SIGNING_TIME} is required with {scheme}")
    if not critical:
        raise EnvelopeInvalid("the crit header is missing or empty")
    if not all(isinstance(name, str) for name in critical):
        raise EnvelopeInvalid("crit lists something other than attribute names")
    must = {SIGNING_SCHEME}
    if scheme == SCHEME_AUTHORITY:
        must.add(AUTHENTIC_SIGNING_TIME)
    if expiry is not None:
        must.add(EXPIRY)
    unmarked = sorted(must - set(critical))
    if unmarked:
        raise EnvelopeInvalid(f"required headers not marked critical: {', '.join(unmarked)}")
    absent = sorted(set(critical) - present)
    if absent:
        raise EnvelopeInvalid(f"marked critical but absent: {', '.join(absent)}")


def parse_certificates(raw: list[bytes]) -> tuple[x509.Certificate, ...]:
    if not raw:
        raise EnvelopeInvalid("the certificate chain is missing")
    try:
        return tuple(x509.load_der_x509_certificate(der) for der in raw)
    except ValueError as exc:
        raise EnvelopeInvalid(f"a certificate of the chain is not DER ({exc})") from exc


def expected_algorithm(cert: x509.Certificate) -> str:
    """The one algorithm the specification allows for the signing certificate's key."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size in _RSA:
        return _RSA[key.key_size]
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _CURVES:
        return _CURVES[key.curve.name]
    raise EnvelopeInvalid(
        "the signing certificate's key is not RSA 2048/3072/4096 or ECDSA P-256/384/521"
    )


def hash_of(algorithm: str) -> hashes.HashAlgorithm:
    return _HASHES[algorithm[2:]]()


def integrity(envelope: Envelope) -> str:
    """Check the signature over ``envelope.signed`` with the signing certificate's key.

    Raises :class:`EnvelopeInvalid` when the algorithm does not fit the key, and
    ``InvalidSignature`` when the signature is not the key's over these bytes.
    """
    cert = envelope.certificates[0]
    want = expected_algorithm(cert)
    if envelope.algorithm != want:
        raise EnvelopeInvalid(
            f"the envelope says {envelope.algorithm}, but the certificate's key requires {want}"
        )
    key = cert.public_key()
    digest = hash_of(want)
    if isinstance(key, rsa.RSAPublicKey):
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.AUTO)
        key.verify(envelope.signature, envelope.signed, pss, digest)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        size = (key.curve.key_size + 7) // 8
        if len(envelope.signature) != 2 * size:
            raise InvalidSignature("the ECDSA signature is not r||s of the curve's size")
        r = int.from_bytes(envelope.signature[:size], "big")
        s = int.from_bytes(envelope.signature[size:], "big")
        key.verify(utils.encode_dss_signature(r, s), envelope.signed, ec.ECDSA(digest))
    return want


@dataclass(frozen=True)
class Target:
    """The payload's ``targetArtifact``: what the signature is about."""

    media_type: str
    digest: str
    size: int


def target_of(envelope: Envelope) -> Target:
    if envelope.content_type != PAYLOAD_TYPE:
        raise EnvelopeInvalid(f"unsupported payload content type {envelope.content_type!r}")
    try:
        doc = json.loads(envelope.payload)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeInvalid(f"the payload is not JSON ({exc.__class__.__name__})") from exc
    target = doc.get("targetArtifact") if isinstance(doc, dict) else None
    if not isinstance(target, dict):
        raise EnvelopeInvalid("the payload has no targetArtifact")
    media_type, digest, size = target.get("mediaType"), target.get("digest"), target.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str):
        raise EnvelopeInvalid("targetArtifact lacks mediaType or digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise EnvelopeInvalid("targetArtifact.size is not a non-negative integer")
    return Target(media_type, digest, size)
