"""Signed checkpoints of the access log's hash chain: made by the writer, read by verify.

A checkpoint is a DSSE envelope (``proxy/attest/dsse.py``) of type
:data:`storage.audit_hashing.CHECKPOINT_TYPE` whose payload is
``{"chain": ..., "seq": N, "hash": "<hex>", "time": "<ISO 8601>"}``: position ``N`` of the chain
had that hash then. Position 0 is the chain's opening (its hash is the anchor). The payload is
what is signed; the columns beside it in ``audit_checkpoints`` are only an index, and
verification trusts the payload alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from proxy.attest.dsse import EnvelopeError, Signer, open_envelope
from storage.audit_hashing import CHECKPOINT_TYPE, Checkpoint, payload_hash


def sign(signer: Signer, chain: str, seq: int, hash_: str, time: datetime) -> str:
    """The envelope (JSON text) of a checkpoint."""
    payload = json.dumps(
        {"chain": chain, "seq": seq, "hash": hash_, "time": time.isoformat()},
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return json.dumps(signer.envelope(CHECKPOINT_TYPE, payload), separators=(",", ":"))


def read(envelope: str | None, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> Checkpoint:
    """The checkpoint an envelope signs; EnvelopeError if it is missing, malformed or not
    signed by one of ``keys``."""
    if envelope is None:
        raise EnvelopeError("the checkpoint is not signed (the gatekeeper had no signing key)")
    try:
        doc = json.loads(envelope)
    except ValueError as exc:
        raise EnvelopeError(f"the checkpoint is not JSON ({exc})") from exc
    payload, _ = open_envelope(doc, keys, CHECKPOINT_TYPE)
    try:
        fields = json.loads(payload)
        checkpoint = Checkpoint(
            chain=str(fields["chain"]),
            seq=int(fields["seq"]),
            hash=str(fields["hash"]),
            time=str(fields["time"]),
            payload_hash=payload_hash(payload),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise EnvelopeError(f"the checkpoint's payload is malformed ({exc})") from exc
    return checkpoint
