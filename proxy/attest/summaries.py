"""Verification summary attestations (SLSA VSA v1): what the gatekeeper decided about an
image, signed so admission controllers check one small attestation instead of re-verifying.

A summary is an in-toto Statement v1 whose predicate is ``https://slsa.dev/verification_summary/v1``,
in a DSSE envelope signed by the gatekeeper's key, in a Sigstore bundle (v0.3) whose
verification material is the key's hint (its ``kid``; no certificate, no transparency log: the
key is pinned by whoever trusts the gatekeeper, from ``/keys/gatekeeper.pem``). It is pushed
beside the image as an OCI referrer (``proxy/attest/publisher.py``), the way cosign stores
bundles: an image manifest of ``artifactType`` :data:`BUNDLE_TYPE` with one layer, the bundle.

Everything here is pure: building, signing and opening documents.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from config.policy import Policy
from proxy.attest.dsse import INTOTO, EnvelopeError, Signer, open_json
from storage.verdicts import FindingRecord, VerdictView

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/verification_summary/v1"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PASSED = "PASSED"
FAILED = "FAILED"
VERIFIED_LEVEL = "REGISTRY_GATEKEEPER_POLICY"
"""The ``verifiedLevels`` entry of a passed summary: the image met the named policy (a custom
level, as the SLSA spec allows; never one starting ``SLSA_``, which the gatekeeper does not
check)."""


@dataclass(frozen=True)
class Summary:
    """A verdict as a summary states it."""

    repository: str
    digest: str
    result: str
    """``PASSED`` or ``FAILED``."""
    event: str
    """The verdict change that made it: ``passed``, ``released``, ``quarantined``..."""
    time: datetime


def policy_digest(policy: Policy | None) -> str | None:
    """SHA-256 of the policy's settings as canonical JSON (keys sorted, no spaces)."""
    if policy is None:
        return None
    canonical = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def advisory_version(data_versions: Mapping[str, Any]) -> str | None:
    """The advisory-data version the vulnerability findings were matched against, if any
    (``verifiers/vulns``: its result's version ends ``advisories-<version>``)."""
    for value in data_versions.values():
        text = str(value)
        if ".advisories-" in text:
            return text.rsplit(".advisories-", 1)[1]
    return None


def statement(
    summary: Summary,
    verdict: VerdictView,
    findings: Sequence[FindingRecord],
    policy: Policy | None,
    *,
    verifier_id: str,
    version: str,
    resource: str,
) -> dict[str, Any]:
    """The in-toto statement of ``summary`` (``resource``: the image's name as clients use it,
    ``host/repository``)."""
    algorithm, _, hexdigest = summary.digest.partition(":")
    severities = Counter(f.severity.lower() for f in findings)
    predicate: dict[str, Any] = {
        "verifier": {"id": verifier_id, "version": {"registry-gatekeeper": version}},
        "timeVerified": summary.time.isoformat().replace("+00:00", "Z"),
        "resourceUri": f"oci://{resource}@{summary.digest}",
        "policy": {"uri": f"urn:registry-gatekeeper:policy:{verdict.policy or 'none'}"},
        "inputAttestations": [],
        "verificationResult": summary.result,
        "verifiedLevels": [VERIFIED_LEVEL] if summary.result == PASSED else [],
        "slsaVersion": "1.0",
        # What the gatekeeper checked, beside the standard fields (consumers that do not know
        # them ignore them).
        "registryGatekeeper": {
            "event": summary.event,
            "state": str(verdict.state),
            "policy": verdict.policy,
            "policyVersion": verdict.policy_version,
            "verifiers": [
                {"name": str(o.get("verifier")), "status": str(o.get("status"))}
                for o in verdict.outcomes
            ],
            "findings": dict(sorted(severities.items())),
            "advisoryDataVersion": advisory_version(verdict.data_versions),
            "dataVersions": dict(verdict.data_versions),
            "reasons": list(verdict.reasons)[:20],
            "releasedBy": verdict.released_by,
            "releaseReason": verdict.release_reason,
        },
    }
    digest = policy_digest(policy)
    if digest is not None:
        predicate["policy"]["digest"] = {"sha256": digest}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": resource, "digest": {algorithm: hexdigest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def bundle(signer: Signer, doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` signed as DSSE, in a Sigstore bundle v0.3 naming the key by its hint."""
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return {
        "mediaType": BUNDLE_TYPE,
        "verificationMaterial": {"publicKey": {"hint": signer.kid}, "tlogEntries": []},
        "dsseEnvelope": signer.envelope(INTOTO, payload),
    }


@dataclass(frozen=True)
class Opened:
    """A summary whose signature verified."""

    statement: dict[str, Any]
    kid: str

    @property
    def result(self) -> str:
        return str(self.statement.get("predicate", {}).get("verificationResult"))

    @property
    def subject_digest(self) -> str | None:
        subjects = self.statement.get("subject") or []
        digests = subjects[0].get("digest", {}) if subjects else {}
        return next((f"{k}:{v}" for k, v in digests.items()), None)


def open_bundle(data: Any, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> Opened:
    """The statement of a summary bundle whose DSSE signature verifies with one of ``keys``;
    EnvelopeError says why not (not a bundle, not a VSA, another key, altered)."""
    if not isinstance(data, dict) or data.get("mediaType") != BUNDLE_TYPE:
        raise EnvelopeError(f"not a Sigstore bundle of type {BUNDLE_TYPE}")
    doc, kid = open_json(data.get("dsseEnvelope"), keys, INTOTO)
    if doc.get("_type") != STATEMENT_TYPE or doc.get("predicateType") != PREDICATE_TYPE:
        raise EnvelopeError("the signed statement is not a verification summary")
    return Opened(doc, kid)


def decode_payload(data: Any) -> dict[str, Any]:
    """The statement of a bundle without checking its signature (for showing it)."""
    try:
        raw = base64.b64decode(data["dsseEnvelope"]["payload"])
        doc = json.loads(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError(f"not a summary bundle ({exc})") from exc
    if not isinstance(doc, dict):
        raise EnvelopeError("not a summary bundle")
    return doc
