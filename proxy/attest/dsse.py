"""DSSE envelopes (the in-toto / Sigstore signature envelope), made and checked with the
gatekeeper's key.

An envelope signs ``PAE(payloadType, payload)`` (DSSE v1's pre-authentication encoding), so a
signature over one payload type can never be replayed as another: a checkpoint cannot pass for
a summary. Signatures are ECDSA P-256 over SHA-256, DER-encoded, base64 in JSON, as cosign and
securesystemslib write them; ``keyid`` is the key's RFC 7638 thumbprint (``gatekeeper keys``
prints it), so a verifier with several keys knows which one to try.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.auth.keyring import key_id

INTOTO = "application/vnd.in-toto+json"


class EnvelopeError(Exception):
    """An envelope that does not verify; the message says why."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signer:
    """The gatekeeper's active key: what it signs with, named by its ``kid``."""

    kid: str
    private: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def of(cls, private: ec.EllipticCurvePrivateKey) -> Signer:
        return cls(key_id(private.public_key()), private)

    @property
    def public(self) -> ec.EllipticCurvePublicKey:
        return self.private.public_key()

    def envelope(self, payload_type: str, payload: bytes) -> dict[str, Any]:
        """A DSSE envelope of ``payload`` with one signature by this key."""
        signature = self.private.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        return {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": payload_type,
            "signatures": [{"keyid": self.kid, "sig": base64.b64encode(signature).decode()}],
        }


def open_envelope(
    envelope: Any, keys: Mapping[str, ec.EllipticCurvePublicKey], payload_type: str
) -> tuple[bytes, str]:
    """The payload of ``envelope`` and the ``kid`` of the key whose signature verifies it;
    EnvelopeError when it is malformed, of another type, or no key in ``keys`` signed it."""
    if not isinstance(envelope, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    if envelope.get("payloadType") != payload_type:
        raise EnvelopeError(f"the envelope's payloadType is not {payload_type}")
    try:
        payload = base64.b64decode(str(envelope.get("payload")), validate=True)
        signatures = [
            (str(s.get("keyid") or ""), base64.b64decode(str(s.get("sig")), validate=True))
            for s in envelope.get("signatures") or []
        ]
    except (binascii.Error, ValueError, AttributeError) as exc:
        raise EnvelopeError(f"the envelope is malformed ({exc})") from exc
    signed = pae(payload_type, payload)
    for kid, signature in signatures:
        candidates = [keys[kid]] if kid in keys else list(keys.values())
        for key in candidates:
            try:
                key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            return payload, key_id(key)
    raise EnvelopeError("no signature of the envelope verifies with the gatekeeper's keys")


def open_json(
    envelope: Any, keys: Mapping[str, ec.EllipticCurvePublicKey], payload_type: str
) -> tuple[dict[str, Any], str]:
    """:func:`open_envelope` for a JSON object payload."""
    payload, kid = open_envelope(envelope, keys, payload_type)
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise EnvelopeError(f"the signed payload is not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise EnvelopeError("the signed payload is not a JSON object")
    return doc, kid
