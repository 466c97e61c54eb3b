"""The ``signatures`` verifier over an in-memory repository: every case of issue 4 yields the
finding (rule id and step) that explains it."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.fakes.signatures import REGISTRY, FakeRepository
from tests.support import cosign
from tests.support.ocihttp import digest_of
from verifiers.base import Finding, Noted, Severity, Skipped
from verifiers.registry_names import RegistryNames
from verifiers.signatures import SignatureVerifier

ISSUER = "https://issuer.example.test"
CI = "https://ci.example.test/org/app/.github/workflows/release.yml@refs/heads/main"


@dataclass
class World:
    bot: cosign.PrivateKey
    alice: cosign.PrivateKey
    bob: cosign.PrivateKey
    stranger: cosign.PrivateKey
    sigstore: cosign.PrivateSigstore
    verifier: SignatureVerifier
    options: dict[str, Any]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    tmp = tmp_path_factory.mktemp("trust")
    sigstore = cosign.PrivateSigstore()
    (tmp / "trusted_root.json").write_text(json.dumps(sigstore.trusted_root()))
    bot, alice, bob, stranger = (cosign.new_key(k) for k in ("p256", "p384", "ed25519", "p256"))
    (tmp / "bot.pub").write_bytes(cosign.public_pem(bot))
    options: dict[str, Any] = {
        "trusted_root": str(tmp / "trusted_root.json"),
        "signers": [
            {"name": "bot", "key_file": str(tmp / "bot.pub")},
            {"name": "alice", "key": cosign.public_pem(alice).decode()},
            {"name": "bob", "key": cosign.public_pem(bob).decode()},
            {"name": "ci", "identity": CI, "issuer": ISSUER},
            {"name": "team", "identity_regex": r"[a-z]+@team\.example\.test", "issuer": ISSUER},
        ],
        "rules": [
            {"name": "keys", "repositories": ["keys/*"], "signers": ["bot"], "require_tlog": False},
            {"name": "tlog", "repositories": ["tlog/*"], "signers": ["bot"]},
            {"name": "keyless", "repositories": ["keyless/*"], "signers": ["ci", "team"]},
            {
                "name": "quorum",
                "repositories": ["quorum/*"],
                "signers": ["bot", "alice", "bob"],
                "threshold": 2,
                "require_tlog": False,
            },
            {
                "name": "release",
                "repositories": ["release/*"],
                "signers": ["alice", "bot"],
                "required": ["bot"],
                "require_tlog": False,
            },
            {
                "name": "promoted",
                "repositories": ["promoted/*"],
                "signers": ["bot"],
                "require_tlog": False,
                "references": ["staging.example.test/*"],
            },
            {"name": "open", "repositories": ["open/*"], "signed": False},
        ],
    }
    verifier = SignatureVerifier(options)
    verifier.know_registry(RegistryNames.of([REGISTRY, "alias.example.test:5000"]))
    return World(bot, alice, bob, stranger, sigstore, verifier, options)


async def run(world: World, repo: FakeRepository, digest: str) -> list[Finding] | Skipped:
    return await world.verifier.verify(repo.image(digest))


def rules(findings: list[Finding] | Skipped) -> list[str]:
    assert not isinstance(findings, Skipped), findings
    return [f.rule_id for f in findings]


def image(name: str) -> tuple[FakeRepository, str]:
    repo = FakeRepository(name)
    return repo, repo.add_image()


async def test_valid_key_signature_passes(world: World) -> None:
    repo, digest = image("keys/app")
    repo.sign(digest, cosign.key_signature(world.bot, repo.reference(), digest))
    found = await run(world, repo, digest)
    assert found == []
    # Who signed is kept as the outcome's detail (the console shows it).
    assert isinstance(found, Noted) and found.note == "signed by bot"


async def test_no_signature(world: World) -> None:
    repo, digest = image("keys/none")
    (finding,) = await run(world, repo, digest)  # type: ignore[misc]
    assert finding.rule_id == "signature.none-trusted" and finding.severity is Severity.CRITICAL
    assert finding.title.startswith("no trusted signature: the image is not signed")


async def test_untrusted_key(world: World) -> None:
    repo, digest = image("keys/stranger")
    repo.sign(digest, cosign.key_signature(world.stranger, repo.reference(), digest))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.untrusted-key"]
    assert isinstance(found, list)
    assert found[1].severity is Severity.HIGH
    assert "step 'the signature verifies with a trusted key' failed" in found[1].title
    # Issue 16: it says what was found, never "no signature", when a signature was found.
    assert found[0].title.endswith(
        "1 signature found, none valid from a trusted signer of rule keys"
    )
    assert found[0].evidence.startswith("cosign tag sha256-")
    assert ", layer 1: signature.untrusted-key; " in found[0].evidence
    assert "no signature" not in found[0].evidence


def _tamper(layer: cosign.SigLayer, payload: bytes) -> cosign.SigLayer:
    return cosign.SigLayer(payload, layer.annotations)


async def test_payload_changed_after_signing(world: World) -> None:
    repo, digest = image("keys/changed")
    layer = cosign.key_signature(world.bot, repo.reference(), digest)
    repo.sign(digest, _tamper(layer, layer.payload.replace(b"keys/changed", b"keys/chang3d")))
    assert "signature.untrusted-key" in rules(await run(world, repo, digest))


async def test_payload_tampered_in_storage(world: World) -> None:
    repo, digest = image("keys/storage")
    layer = cosign.key_signature(world.bot, repo.reference(), digest)
    repo.sign(digest, layer)
    repo.blobs[digest_of(layer.payload)] = layer.payload.replace(b"keys/storage", b"keys/st0rage")
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.payload-blob-mismatch"]
    assert isinstance(found, list) and "altered in storage" in found[1].title


async def test_payload_for_another_digest(world: World) -> None:
    repo, digest = image("keys/other-digest")
    other = repo.add_image()
    repo.sign(digest, cosign.key_signature(world.bot, repo.reference(), other))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.payload-digest-mismatch"]
    assert isinstance(found, list) and f"signs {other}, not {digest}" in found[1].title


async def test_signature_made_for_another_repository(world: World) -> None:
    repo, digest = image("keys/here")
    repo.sign(digest, cosign.key_signature(world.bot, "registry.example.test/keys/there", digest))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.reference-mismatch"]
    assert isinstance(found, list)
    assert (
        "made for registry.example.test/keys/there, not for repository keys/here" in found[1].title
    )


@pytest.mark.parametrize(
    ("reference", "named"),
    [
        ("other-registry.example/keys/hosted", "other-registry.example"),
        (f"{REGISTRY}:5000/keys/hosted", f"{REGISTRY}:5000"),  # another port, another registry
        ("alias.example.test/keys/hosted", "alias.example.test"),  # the alias has a port
        ("keys/hosted", "no registry host, which means docker.io"),
        ("docker.io/keys/hosted", "docker.io"),
    ],
)
async def test_signature_made_for_another_registry(
    world: World, reference: str, named: str
) -> None:
    """The repository path matches, the registry does not: cosign signed another registry's
    image (the signature was copied here), so it does not count."""
    repo, digest = image("keys/hosted")
    repo.sign(digest, cosign.key_signature(world.bot, reference, digest))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.registry-mismatch"]
    assert isinstance(found, list)
    assert found[1].title.startswith("step 'the payload names this registry' failed")
    assert f"made for {reference} ({named}), not for this registry" in found[1].title
    assert "alias.example.test:5000" in found[1].title and "public_aliases" in found[1].title


@pytest.mark.parametrize(
    "reference", [f"{REGISTRY}/keys/named", "Alias.Example.Test:5000/keys/named:v1"]
)
async def test_signature_for_any_of_the_registry_names_counts(world: World, reference: str) -> None:
    repo, digest = image("keys/named")
    repo.sign(digest, cosign.key_signature(world.bot, reference, digest))
    assert await run(world, repo, digest) == []


async def test_a_verifier_never_told_its_names_accepts_no_registry(world: World) -> None:
    """Built without the registry's names (a plugin host, a test), it fails closed."""
    bare = SignatureVerifier(world.options)
    repo, digest = image("keys/bare")
    repo.sign(digest, cosign.key_signature(world.bot, repo.reference(), digest))
    found = await bare.verify(repo.image(digest))
    assert rules(found) == ["signature.none-trusted", "signature.registry-mismatch"]
    assert bare.version != world.verifier.version  # the names are part of what decides


async def test_promoted_image_reference_allowed_by_rule(world: World) -> None:
    repo, digest = image("promoted/app")
    repo.sign(digest, cosign.key_signature(world.bot, "staging.example.test/team/app", digest))
    assert await run(world, repo, digest) == []


MALFORMED: dict[str, Callable[[cosign.SigLayer], cosign.SigLayer]] = {
    "bad base64": lambda s: cosign.SigLayer(
        s.payload, {"dev.cosignproject.cosign/signature": "not*base64!"}
    ),
    "truncated DER": lambda s: cosign.SigLayer(
        s.payload,
        {
            "dev.cosignproject.cosign/signature": base64.b64encode(
                base64.b64decode(s.annotations["dev.cosignproject.cosign/signature"])[:30]
            ).decode()
        },
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_signature(world: World, case: str) -> None:
    repo, digest = image("keys/malformed")
    repo.sign(digest, MALFORMED[case](cosign.key_signature(world.bot, repo.reference(), digest)))
    assert rules(await run(world, repo, digest)) == [
        "signature.none-trusted",
        "signature.malformed",
    ]


async def test_payload_not_json(world: World) -> None:
    repo, digest = image("keys/notjson")
    body = b"this is not json " + digest.encode()
    signature = base64.b64encode(cosign.sign(world.bot, body)).decode()
    repo.sign(digest, cosign.SigLayer(body, {"dev.cosignproject.cosign/signature": signature}))
    assert rules(await run(world, repo, digest)) == [
        "signature.none-trusted",
        "signature.payload-not-json",
    ]


async def test_huge_payload_is_refused_unread(world: World) -> None:
    repo, digest = image("keys/huge")
    body = b"{" + b" " * (10 * 1024 * 1024) + b"}"
    signature = base64.b64encode(cosign.sign(world.bot, body)).decode()
    repo.sign(digest, cosign.SigLayer(body, {"dev.cosignproject.cosign/signature": signature}))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.payload-too-large"]


async def test_wrong_type(world: World) -> None:
    repo, digest = image("keys/type")
    body = cosign.payload(repo.reference(), digest).replace(b"container image", b"blob")
    signature = base64.b64encode(cosign.sign(world.bot, body)).decode()
    repo.sign(digest, cosign.SigLayer(body, {"dev.cosignproject.cosign/signature": signature}))
    assert "signature.wrong-type" in rules(await run(world, repo, digest))


async def test_threshold_two_of_three(world: World) -> None:
    repo, digest = image("quorum/app")
    ref = repo.reference()
    repo.sign(digest, cosign.key_signature(world.alice, ref, digest))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.threshold-not-met"]
    assert (
        isinstance(found, list)
        and "2 of 3 trusted signers must sign; 1 did (alice)" in found[0].title
    )
    repo.sign(digest, *(cosign.key_signature(k, ref, digest) for k in (world.alice, world.bob)))
    assert await run(world, repo, digest) == []


async def test_a_signer_counts_once(world: World) -> None:
    repo, digest = image("quorum/twice")
    ref = repo.reference()
    repo.sign(digest, *(cosign.key_signature(world.alice, ref, digest) for _ in range(2)))
    assert rules(await run(world, repo, digest)) == ["signature.threshold-not-met"]


async def test_required_signer(world: World) -> None:
    repo, digest = image("release/app")
    repo.sign(digest, cosign.key_signature(world.alice, repo.reference(), digest))
    assert rules(await run(world, repo, digest)) == ["signature.required-signer-missing"]
    repo.sign(digest, cosign.key_signature(world.bot, repo.reference(), digest))
    assert await run(world, repo, digest) == []


async def test_junk_beside_a_valid_signature_does_not_block(world: World) -> None:
    repo, digest = image("keys/junk")
    good = cosign.key_signature(world.bot, repo.reference(), digest)
    junk = cosign.key_signature(world.stranger, repo.reference(), digest)
    found = await run(world, repo, digest)
    repo.sign(digest, junk, good)
    found = await run(world, repo, digest)
    assert isinstance(found, list)
    assert [(f.rule_id, f.severity) for f in found] == [("signature.untrusted-key", Severity.LOW)]


async def test_key_signature_with_transparency_log(world: World) -> None:
    repo, digest = image("tlog/app")
    layer = cosign.key_signature(world.bot, repo.reference(), digest)
    signature = base64.b64decode(layer.annotations["dev.cosignproject.cosign/signature"])
    bundle = world.sigstore.rekor_annotation(signature, layer.payload, cosign.public_pem(world.bot))
    repo.sign(digest, layer)
    assert rules(await run(world, repo, digest)) == [
        "signature.none-trusted",
        "signature.tlog-missing",
    ]
    repo.sign(
        digest,
        cosign.SigLayer(layer.payload, {**layer.annotations, "dev.sigstore.cosign/bundle": bundle}),
    )
    assert await run(world, repo, digest) == []


def keyless(
    world: World,
    repo: FakeRepository,
    digest: str,
    identity: str = CI,
    issuer: str = ISSUER,
    **kwargs: Any,
) -> cosign.SigLayer:
    options = {k: kwargs.pop(k) for k in ("not_before", "lifetime") if k in kwargs}
    cert, key = world.sigstore.issue(identity, issuer, **options)
    return world.sigstore.keyless_signature(cert, key, repo.reference(), digest, **kwargs)


async def test_keyless_signature_passes(world: World) -> None:
    repo, digest = image("keyless/app")
    repo.sign(digest, keyless(world, repo, digest))
    assert await run(world, repo, digest) == []


async def test_keyless_identity_by_regular_expression(world: World) -> None:
    repo, digest = image("keyless/team")
    repo.sign(digest, keyless(world, repo, digest, identity="dana@team.example.test"))
    assert await run(world, repo, digest) == []
    repo.sign(digest, keyless(world, repo, digest, identity="dana@team.example.test.evil"))
    assert "signature.identity-mismatch" in rules(await run(world, repo, digest))


async def test_keyless_wrong_issuer(world: World) -> None:
    repo, digest = image("keyless/issuer")
    repo.sign(digest, keyless(world, repo, digest, issuer="https://evil.example.test"))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.issuer-mismatch"]


async def test_keyless_wrong_identity(world: World) -> None:
    repo, digest = image("keyless/identity")
    repo.sign(digest, keyless(world, repo, digest, identity="mallory@example.test"))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.identity-mismatch"]
    assert isinstance(found, list) and "mallory@example.test" in found[1].title


async def test_keyless_expired_certificate(world: World) -> None:
    repo, digest = image("keyless/expired")
    past = datetime.now(UTC) - timedelta(hours=2)
    repo.sign(digest, keyless(world, repo, digest, not_before=past))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.certificate-expired"]


async def test_keyless_without_log_entry(world: World) -> None:
    repo, digest = image("keyless/nolog")
    repo.sign(digest, keyless(world, repo, digest, tlog=False))
    assert rules(await run(world, repo, digest)) == [
        "signature.none-trusted",
        "signature.tlog-missing",
    ]


async def test_keyless_from_another_ca_or_log(world: World) -> None:
    impostor = cosign.PrivateSigstore()
    repo, digest = image("keyless/impostor")
    cert, key = impostor.issue(CI, ISSUER)
    repo.sign(digest, impostor.keyless_signature(cert, key, repo.reference(), digest))
    assert "signature.tlog-untrusted" in rules(await run(world, repo, digest))
    layer = impostor.keyless_signature(cert, key, repo.reference(), digest, tlog=False)
    signature = base64.b64decode(layer.annotations["dev.cosignproject.cosign/signature"])
    pem = cert.public_bytes(serialization.Encoding.PEM)
    layer.annotations["dev.sigstore.cosign/bundle"] = world.sigstore.rekor_annotation(
        signature, layer.payload, pem
    )
    repo.sign(digest, layer)
    assert "signature.certificate-untrusted" in rules(await run(world, repo, digest))


async def test_log_entry_for_another_signature(world: World) -> None:
    repo, digest = image("keyless/replay")
    layer = keyless(world, repo, digest)
    other = keyless(world, repo, repo.add_image())
    layer.annotations["dev.sigstore.cosign/bundle"] = other.annotations[
        "dev.sigstore.cosign/bundle"
    ]
    repo.sign(digest, layer)
    assert "signature.tlog-mismatch" in rules(await run(world, repo, digest))


async def test_forged_signed_entry_timestamp(world: World) -> None:
    repo, digest = image("keyless/forged")
    layer = keyless(world, repo, digest)
    doc = json.loads(layer.annotations["dev.sigstore.cosign/bundle"])
    doc["Payload"]["integratedTime"] -= 60
    layer.annotations["dev.sigstore.cosign/bundle"] = json.dumps(doc)
    repo.sign(digest, layer)
    assert "signature.tlog-invalid" in rules(await run(world, repo, digest))


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


async def test_a_deeply_nested_log_annotation_fails_its_step(world: World) -> None:
    """It raised RecursionError out of the keyless path (a crash, not a finding)."""
    repo, digest = image("keyless/deep")
    layer = keyless(world, repo, digest)
    annotation = layer.annotations["dev.sigstore.cosign/bundle"]
    layer.annotations["dev.sigstore.cosign/bundle"] = (
        annotation[:-1] + ', "Extra": ' + _deep(100_000) + "}"
    )
    repo.sign(digest, layer)
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.tlog-invalid"]
    assert isinstance(found, list)
    assert found[1].title.startswith("step 'the transparency log proves the signature' failed")
    assert "nested deeper than 64 levels" in found[1].title


async def test_a_deeply_nested_signed_payload_is_not_json(world: World) -> None:
    repo, digest = image("keys/deep")
    body = cosign.payload(repo.reference(), digest)[:-1] + b', "x": ' + _deep(5000).encode() + b"}"
    signature = base64.b64encode(cosign.sign(world.bot, body)).decode()
    repo.sign(digest, cosign.SigLayer(body, {"dev.cosignproject.cosign/signature": signature}))
    found = await run(world, repo, digest)
    assert rules(found) == ["signature.none-trusted", "signature.payload-not-json"]
    assert isinstance(found, list) and "nested deeper" in found[1].title


async def test_sigstore_bundle_referrer(world: World) -> None:
    repo, digest = image("tlog/bundled")
    repo.attach_bundle(digest, world.sigstore.key_bundle(world.bot, digest))
    assert await run(world, repo, digest) == []
    repo2, digest2 = image("tlog/bundled-stranger")
    repo2.attach_bundle(digest2, world.sigstore.key_bundle(world.stranger, digest2))
    assert rules(await run(world, repo2, digest2)) == [
        "signature.none-trusted",
        "signature.untrusted-key",
    ]


async def test_bundle_for_another_image(world: World) -> None:
    repo, digest = image("tlog/bundle-other")
    other = repo.add_image()
    bundle = world.sigstore.key_bundle(world.bot, other)
    repo.attach_bundle(digest, bundle)
    assert "signature.bundle-invalid" in rules(await run(world, repo, digest))


async def test_exempt_repositories_are_an_exemption_not_a_skip(world: World) -> None:
    open_repo, open_digest = image("open/app")
    exempt = await run(world, open_repo, open_digest)
    assert isinstance(exempt, Skipped) and exempt.exempt


async def test_the_verifier_does_not_decide_what_is_an_artifact(world: World) -> None:
    """A signature manifest handed to the verifier is checked like any manifest: whether it
    is an artifact that needs no signature is the content classifier's call, made before."""
    repo, digest = image("keys/sigs")
    repo.sign(digest, cosign.key_signature(world.bot, repo.reference(), digest))
    sig_manifest = repo.manifests[cosign.signature_tag(digest)]
    repo.manifests[digest_of(sig_manifest)] = sig_manifest
    found = await run(world, repo, digest_of(sig_manifest))
    assert isinstance(found, list)
    assert {f.rule_id for f in found} == {"signature.none-trusted"}


async def test_repository_without_rule(world: World) -> None:
    repo, digest = image("elsewhere/app")
    (finding,) = await run(world, repo, digest)  # type: ignore[misc]
    assert finding.rule_id == "signature.no-rule" and finding.severity is Severity.CRITICAL


async def test_report_numbers_every_step(world: World, tmp_path: Path) -> None:
    repo, digest = image("keys/steps")
    repo.sign(digest, cosign.key_signature(world.bot, repo.reference(), digest))
    report = await world.verifier.examine(repo.image(digest))
    assert not isinstance(report, Skipped) and report.passed
    (checked,) = report.checked
    assert [s.number for s in checked.steps] == list(range(1, len(checked.steps) + 1))
    assert checked.signer == "bot" and all(s.ok for s in checked.steps)


async def test_an_offline_key_bundle_counts_where_no_log_is_required(world: World) -> None:
    """A v0.3 bundle of a key signature with no transparency-log entry (made offline), as a
    referrer: it counts under a rule with ``require_tlog = false``, as the same key's ``.sig``
    signature without a log entry does, and is refused where the log is required."""
    repo, digest = image("keys/offline-bundle")
    repo.attach_bundle(digest, world.sigstore.key_bundle(world.bot, digest, logged=False))
    assert await run(world, repo, digest) == []
    strict, strict_digest = image("tlog/offline-bundle")
    strict.attach_bundle(
        strict_digest, world.sigstore.key_bundle(world.bot, strict_digest, logged=False)
    )
    assert rules(await run(world, strict, strict_digest)) == [
        "signature.none-trusted",
        "signature.tlog-missing",
    ]
    stranger, stranger_digest = image("keys/offline-stranger")
    stranger.attach_bundle(
        stranger_digest, world.sigstore.key_bundle(world.stranger, stranger_digest, logged=False)
    )
    assert rules(await run(world, stranger, stranger_digest)) == [
        "signature.none-trusted",
        "signature.untrusted-key",
    ]
