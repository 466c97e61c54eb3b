"""A VEX referrer of an image, checked before anything it says is believed.

cosign attaches an OpenVEX document to an image as an in-toto attestation (``cosign attest
--type openvex --predicate vex.json --key cosign.key IMAGE``): a DSSE envelope whose payload is
an in-toto statement with predicate type ``https://openvex.dev/ns`` and the image as its
subject, stored either in a Sigstore bundle (v0.3, ``dsseEnvelope``; cosign's new bundle
format, pushed as an OCI 1.1 referrer) or as the envelope itself (a layer of type
``application/vnd.dsse.envelope.v1+json``, cosign's attestation layout).

Steps, each a :class:`Rejected` with its own rule when it fails (the payload is parsed only
once authenticated, as cosign does):

1. the envelope is there: a bare OpenVEX document is unsigned and never believed;
2. a signature verifies over DSSE's pre-authentication encoding with a key the policy trusts
   for VEX (a key alone: a transparency-log entry is neither required nor consulted);
3. the payload is an in-toto statement with an OpenVEX predicate;
4. its subjects include the image the referrer is attached to, and a subject naming a
   repository names this one (a statement signed for one repository does not travel);
5. the predicate is a valid OpenVEX document (``verifiers.vex.model``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oci import boundedjson
from verifiers.registry_names import split_reference
from verifiers.signatures.keys import Check, PublicKey
from verifiers.vex.model import CONTEXT_PREFIX, Document, VexError, from_data

OPENVEX_TYPE = "application/vnd.openvex+json"
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
INTOTO_TYPE = "application/vnd.in-toto+json"
PREDICATE_ANNOTATIONS = ("dev.sigstore.bundle.predicateType", "predicateType")
"""Where cosign writes an attestation's predicate type: on a bundle referrer's manifest, on an
attestation layer."""


class Rejected(Exception):
    """A VEX referrer that changes nothing, with the finding's rule and the reason."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class Accepted:
    """A VEX referrer that verified."""

    document: Document
    text: str
    """The OpenVEX document as JSON (what is stored)."""
    signer: PublicKey


def is_openvex(predicate_type: object) -> bool:
    return isinstance(predicate_type, str) and predicate_type.startswith(CONTEXT_PREFIX)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise Rejected("vex.malformed", f"the envelope has no {what}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected("vex.malformed", f"the envelope's {what} is not base64") from exc


def envelope_of(blob: bytes) -> dict[str, Any]:
    """Step 1: the DSSE envelope of a bundle or of an attestation layer."""
    try:
        data = boundedjson.loads(blob)
    except ValueError as exc:
        raise Rejected("vex.malformed", f"the referrer's content is not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise Rejected("vex.malformed", "the referrer's content is not a JSON object")
    if "@context" in data and "statements" in data:
        raise Rejected(
            "vex.unsigned",
            "an unsigned OpenVEX document: only one signed by a key the policy trusts for VEX "
            "is believed",
        )
    envelope = data.get("dsseEnvelope", data)
    if not isinstance(envelope, dict) or "payload" not in envelope:
        raise Rejected("vex.unsigned", "no DSSE envelope (no signature) in the referrer")
    return envelope


def verify(
    blob: bytes,
    *,
    subject: str,
    repository: str,
    keys: Sequence[PublicKey],
    policy: str,
) -> Accepted:
    """Steps 1-5 of the module docstring for one referrer's content."""
    envelope = envelope_of(blob)
    payload = _b64(envelope.get("payload"), "payload")
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str):
        raise Rejected("vex.malformed", "the envelope has no payloadType")
    signer = _signer(envelope, pae(payload_type, payload), keys, policy)
    if payload_type != INTOTO_TYPE:
        raise Rejected("vex.malformed", f"the payload is {payload_type!r}, not in-toto")
    statement = _statement(payload)
    _check_subject(statement, subject, repository)
    try:
        document = from_data(statement.get("predicate"))
    except VexError as exc:
        raise Rejected("vex.malformed", f"the OpenVEX document is invalid: {exc}") from exc
    text = json.dumps(statement.get("predicate"), sort_keys=True, separators=(",", ":"))
    return Accepted(document, text, signer)


def _signer(
    envelope: dict[str, Any], signed: bytes, keys: Sequence[PublicKey], policy: str
) -> PublicKey:
    """Step 2."""
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise Rejected("vex.unsigned", "the envelope carries no signature")
    if not keys:
        raise Rejected(
            "vex.untrusted-key", f"policy {policy} trusts no key for VEX ([policies.vex] keys)"
        )
    for entry in signatures[:16]:
        signature = _b64(entry.get("sig") if isinstance(entry, dict) else None, "signature")
        for key in keys:
            if key.check(signature, signed) is Check.VALID:
                return key
    raise Rejected(
        "vex.untrusted-key",
        f"no key policy {policy} trusts for VEX verifies the signature: it was made by another "
        "key, or the document was changed after signing",
    )


def _statement(payload: bytes) -> dict[str, Any]:
    """Step 3."""
    try:
        statement = boundedjson.loads(payload)
    except ValueError as exc:
        raise Rejected("vex.malformed", f"the in-toto statement is not JSON ({exc})") from exc
    if not isinstance(statement, dict):
        raise Rejected("vex.malformed", "the in-toto statement is not a JSON object")
    if not is_openvex(statement.get("predicateType")):
        raise Rejected(
            "vex.malformed",
            f"predicate type {statement.get('predicateType')!r} is not OpenVEX",
        )
    return statement


def _check_subject(statement: dict[str, Any], subject: str, repository: str) -> None:
    """Step 4."""
    subjects = statement.get("subject")
    wanted = subject.removeprefix("sha256:")
    for entry in subjects if isinstance(subjects, list) else []:
        digest = entry.get("digest") if isinstance(entry, dict) else None
        if not isinstance(digest, dict) or str(digest.get("sha256", "")).lower() != wanted:
            continue
        name = entry.get("name")
        if isinstance(name, str) and name and split_reference(name).repository != repository:
            raise Rejected(
                "vex.wrong-subject",
                f"the statement is about {name}, not repository {repository}",
            )
        return
    raise Rejected(
        "vex.wrong-subject",
        f"the statement's subjects do not include {subject}, the image it is attached to",
    )
