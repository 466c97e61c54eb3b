"""The RFC 3161 timestamp countersignature of a ``notary.x509`` signature.

Notation puts the TSA's ``TimeStampToken`` (CMS SignedData over a TSTInfo) in the unprotected
header ``io.cncf.notary.timestampSignature``; its message imprint is the hash of the envelope's
signature bytes. ``rfc3161_client`` (already installed with ``sigstore``) verifies CMS, the TSA
chain up to the policy's ``tsa`` stores, the ``timeStamping`` usage and the imprint; it reads
whole responses, so the token is wrapped in a granted ``TimeStampResp`` first. The result is
the range ``genTime ± accuracy`` within which the signature certainly existed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from rfc3161_client import VerificationError as Rfc3161VerificationError
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from verifiers.signatures.errors import StepFailed
from verifiers.signatures.notation.truststore import NamedStore

_HASHES = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_GRANTED = bytes.fromhex("3003020100")  # PKIStatusInfo { status granted(0) }


@dataclass(frozen=True)
class Stamped:
    """When the TSA says the signature existed: between ``lower`` and ``upper``."""

    lower: datetime
    upper: datetime
    authority: str

    def describe(self) -> str:
        return (
            f"{self.lower:%Y-%m-%dT%H:%M:%SZ} to {self.upper:%Y-%m-%dT%H:%M:%SZ} "
            f"by {self.authority}"
        )


def _fail(detail: str) -> StepFailed:
    return StepFailed("notation.timestamp-invalid", detail)


def verify_token(token: bytes | None, signature: bytes, stores: list[NamedStore]) -> Stamped:
    """Check the countersignature over ``signature``; raise ``notation.timestamp-invalid``."""
    if not token:
        raise _fail("the policy has a tsa trust store, but the signature has no timestamp")
    try:
        response = decode_timestamp_response(_wrap(token))
    except (ValueError, TypeError) as exc:
        raise _fail(f"the timestamp token does not parse ({exc})") from exc
    info = response.tst_info
    algorithm = _HASHES.get(info.message_imprint.hash_algorithm.dotted_string)
    if algorithm is None:
        raise _fail("the timestamp hashes with an algorithm other than SHA-2")
    builder = VerifierBuilder()
    for store in stores:
        for root in store.certificates:
            builder = builder.add_root_certificate(root)
    for der in response.signed_data.certificates:
        builder = builder.add_intermediate_certificate(x509.load_der_x509_certificate(der))
    try:
        builder.build().verify(response, hashlib.new(algorithm, signature).digest())
    except (Rfc3161VerificationError, ValueError) as exc:
        names = ", ".join(s.label for s in stores)
        raise _fail(f"the timestamp does not verify against {names}: {exc}") from exc
    accuracy = timedelta()
    if info.accuracy is not None:
        acc = info.accuracy
        accuracy = timedelta(
            seconds=acc.seconds or 0, milliseconds=acc.millis or 0, microseconds=acc.micros or 0
        )
    when = info.gen_time
    authority = ", ".join(s.label for s in stores)
    return Stamped(when - accuracy, when + accuracy, authority)


def _wrap(token: bytes) -> bytes:
    """``TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken }``."""
    body = _GRANTED + token
    return b"\x30" + _length(len(body)) + body


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw
