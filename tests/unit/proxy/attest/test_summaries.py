"""Verification summaries (issue 18): the statement says what the verdict says, the bundle
opens only with the gatekeeper's key, and nothing else passes for one."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from config.policy import Policy
from proxy.attest import summaries
from proxy.attest.dsse import EnvelopeError, Signer
from proxy.auth.keyring import generate
from storage.audit_hashing import CHECKPOINT_TYPE
from storage.verdicts import FindingRecord, VerdictView
from verifiers.lifecycle import State

DIGEST = "sha256:" + "ab" * 32


def _verdict() -> VerdictView:
    moment = datetime(2026, 12, 6, 12, tzinfo=UTC)
    return VerdictView(
        repository="team/app",
        digest=DIGEST,
        state=State.PASSED,
        reasons=(),
        policy="default",
        policy_version="abc",
        data_versions={"vulnerabilities": "1.advisories-7", "config-sanity": "1"},
        outcomes=({"verifier": "vulnerabilities", "status": "ok"},),
        released_by=None,
        release_reason=None,
        release_expires=None,
        decided_at=moment,
        updated_at=moment,
    )


def _statement(result: str = summaries.PASSED) -> dict[str, object]:
    policy = Policy(name="default", repositories=["*"])
    found = [
        FindingRecord("vulnerabilities", "CVE-1", "HIGH", "t"),
        FindingRecord("vulnerabilities", "CVE-2", "high", "t"),
        FindingRecord("secrets", "s", "low", "t"),
    ]
    summary = summaries.Summary("team/app", DIGEST, result, "passed", datetime.now(UTC))
    return summaries.statement(
        summary,
        _verdict(),
        found,
        policy,
        verifier_id="urn:registry-gatekeeper",
        version="0.1.0",
        resource="gk.example/team/app",
    )


def test_the_statement_carries_what_was_decided() -> None:
    doc = _statement()
    assert doc["subject"] == [{"name": "gk.example/team/app", "digest": {"sha256": "ab" * 32}}]
    predicate = doc["predicate"]
    assert isinstance(predicate, dict)
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["resourceUri"] == f"oci://gk.example/team/app@{DIGEST}"
    assert len(predicate["policy"]["digest"]["sha256"]) == 64
    details = predicate["registryGatekeeper"]
    assert details["findings"] == {"high": 2, "low": 1}
    assert details["advisoryDataVersion"] == "7"
    assert details["verifiers"] == [{"name": "vulnerabilities", "status": "ok"}]
    assert _statement(summaries.FAILED)["predicate"]["verifiedLevels"] == []  # type: ignore[index]


def test_the_bundle_opens_with_the_key_only() -> None:
    signer, other = Signer.of(generate()), Signer.of(generate())
    bundle = summaries.bundle(signer, _statement())
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == signer.kid
    opened = summaries.open_bundle(bundle, {signer.kid: signer.public})
    assert opened.result == "PASSED" and opened.subject_digest == DIGEST
    with pytest.raises(EnvelopeError):
        summaries.open_bundle(bundle, {other.kid: other.public})
    altered = json.loads(json.dumps(bundle))
    doc = json.loads(base64.b64decode(altered["dsseEnvelope"]["payload"]))
    doc["predicate"]["verificationResult"] = "PASSED!"
    altered["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(doc).encode()).decode()
    with pytest.raises(EnvelopeError):
        summaries.open_bundle(altered, {signer.kid: signer.public})


def test_a_checkpoint_envelope_does_not_pass_for_a_summary() -> None:
    """DSSE signs the payload type too: the gatekeeper's checkpoints cannot be replayed as
    summaries (nor any other statement type as a VSA)."""
    signer = Signer.of(generate())
    envelope = signer.envelope(CHECKPOINT_TYPE, json.dumps(_statement()).encode())
    bundle = {"mediaType": summaries.BUNDLE_TYPE, "dsseEnvelope": envelope}
    with pytest.raises(EnvelopeError, match="payloadType"):
        summaries.open_bundle(bundle, {signer.kid: signer.public})
    other = dict(_statement(), predicateType="https://slsa.dev/provenance/v1")
    with pytest.raises(EnvelopeError, match="not a verification summary"):
        summaries.open_bundle(summaries.bundle(signer, other), {signer.kid: signer.public})
