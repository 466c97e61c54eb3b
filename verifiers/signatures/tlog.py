"""Transparency-log proof in cosign's layout: the ``dev.sigstore.cosign/bundle`` annotation.

It carries a Rekor entry (a ``hashedrekord`` body) and the log's signed entry timestamp (SET)
over that entry. Verification, in order:

1. the annotation parses (as bounded JSON: a deeply nested one fails this step);
2. the entry comes from a log the trusted root lists (by log id);
3. the SET verifies with that log's key over the canonical (RFC 8785) entry;
4. the integration time lies inside the log key's validity and not in the future;
5. the entry records exactly this signature, payload hash and signing key or certificate
   (otherwise a valid entry for something else could be replayed).

The integration time it proves is the signing time certificates are checked against.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography import x509

from oci import boundedjson
from verifiers.signatures.errors import StepFailed
from verifiers.signatures.keys import Check, KeyFormatError, PublicKey
from verifiers.signatures.trust import TrustRoot

CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class LogProof:
    """What a verified log entry proves."""

    integrated_time: datetime
    log_index: int
    log_id: str

    def describe(self) -> str:
        return f"log entry {self.log_index}, integrated {self.integrated_time:%Y-%m-%dT%H:%M:%SZ}"


@dataclass(frozen=True)
class SignedMaterial:
    """What the entry must record: the signature, the signed bytes and who signed."""

    signature: bytes
    payload_sha256: bytes
    key: PublicKey
    certificate: x509.Certificate | None = None


def verify_rekor_bundle(
    annotation: str, trust: TrustRoot, material: SignedMaterial, now: datetime | None = None
) -> LogProof:
    now = now or datetime.now(UTC)
    # (1) parse
    entry, set_signature = _parse(annotation)
    body_b64, integrated, index, log_hex = (
        entry["body"],
        entry["integratedTime"],
        entry["logIndex"],
        entry["logID"],
    )
    # (2) a log we trust
    try:
        log = trust.log_key(bytes.fromhex(log_hex))
    except ValueError:
        log = None
    if log is None:
        raise StepFailed(
            "signature.tlog-untrusted",
            f"the entry is from log {log_hex[:16]}…, which {trust.source} does not list",
        )
    # (3) the signed entry timestamp
    canonical = rfc8785.dumps(
        {"body": body_b64, "integratedTime": integrated, "logID": log_hex, "logIndex": index}
    )
    if log.key.check(set_signature, canonical) is not Check.VALID:
        raise StepFailed(
            "signature.tlog-invalid", "the signed entry timestamp does not verify with the log key"
        )
    # (4) time
    moment = datetime.fromtimestamp(integrated, UTC)
    if moment > now + CLOCK_SKEW:
        raise StepFailed("signature.tlog-invalid", f"integration time {moment} is in the future")
    if not log.valid.contains(moment):
        raise StepFailed(
            "signature.tlog-invalid", f"the log key was not valid at integration time {moment}"
        )
    # (5) the entry is about this signature
    try:
        body = base64.b64decode(body_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise StepFailed("signature.tlog-invalid", "the log entry body is not base64") from exc
    check_hashedrekord(body, material)
    return LogProof(moment, index, log_hex)


def _parse(annotation: str) -> tuple[dict[str, Any], bytes]:
    try:
        doc = boundedjson.loads(annotation)
        entry = doc["Payload"]
        set_signature = base64.b64decode(doc["SignedEntryTimestamp"], validate=True)
        if not (
            isinstance(entry["body"], str)
            and isinstance(entry["integratedTime"], int)
            and isinstance(entry["logIndex"], int)
            and isinstance(entry["logID"], str)
        ):
            raise TypeError("unexpected field types")
        if entry["logIndex"] < 0:
            raise ValueError("negative log index")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise StepFailed(
            "signature.tlog-invalid", f"the log bundle annotation is malformed ({exc})"
        ) from exc
    return entry, set_signature


def check_hashedrekord(body: bytes, material: SignedMaterial) -> None:
    """(5) The ``hashedrekord`` entry records this signature, digest and signer."""

    def mismatch(what: str) -> StepFailed:
        return StepFailed("signature.tlog-mismatch", f"the log entry records {what}")

    try:
        doc = boundedjson.loads(body)
        if doc.get("kind") != "hashedrekord" or doc.get("apiVersion") != "0.0.1":
            raise mismatch(
                f"a {doc.get('kind')!r} {doc.get('apiVersion')} entry, not a hashedrekord 0.0.1"
            )
        spec = doc["spec"]
        digest = spec["data"]["hash"]
        signature = base64.b64decode(spec["signature"]["content"])
        recorded_pem = base64.b64decode(spec["signature"]["publicKey"]["content"])
    except StepFailed:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise StepFailed(
            "signature.tlog-invalid", f"the log entry body is malformed ({exc})"
        ) from exc
    if digest.get("algorithm") != "sha256" or (
        digest.get("value") != material.payload_sha256.hex()
    ):
        raise mismatch("the hash of a different payload")
    if signature != material.signature:
        raise mismatch("a different signature")
    if not _same_signer(recorded_pem, material):
        raise mismatch("a different key or certificate")


def _same_signer(recorded_pem: bytes, material: SignedMaterial) -> bool:
    if material.certificate is not None:
        try:
            recorded = x509.load_pem_x509_certificate(recorded_pem)
        except ValueError:
            return False
        return recorded == material.certificate
    try:
        return PublicKey.from_pem(recorded_pem).key_id == material.key.key_id
    except KeyFormatError:
        return False
