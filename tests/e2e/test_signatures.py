"""Signature verification end to end: cosign-format signatures pushed through a real gatekeeper
into the real registry, then pulled (or denied with the reason).

Signatures are made with ``tests.support.cosign`` in exactly cosign's formats: the signing key
is read back from an encrypted ``cosign.key`` and the gatekeeper trusts ``cosign.pub``; keyless
signatures come from a private Sigstore deployment described by its own ``trusted_root.json``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import cosign
from tests.support.clients import Podman
from tests.support.database import Database
from tests.support.fixtures import running_gatekeeper
from tests.support.gatekeeper import Gatekeeper, run_cli
from tests.support.ocihttp import (
    OCI_INDEX,
    OCI_MANIFEST,
    created,
    digest_of,
    push_blob,
    push_image,
    tar_layer,
)
from tests.support.procs import free_port
from tests.support.registry import Registry
from tests.support.signing import (
    ACCEPT,
    build,
    denial,
    events,
    findings,
    pull,
    reference,
    wait_pull,
)

pytestmark = pytest.mark.e2e

PASSWORD = b"correct horse battery staple"
ISSUER = "https://token.actions.example.test"
CI = "https://git.example.test/org/app/.github/workflows/release.yml@refs/heads/main"
ADMIN_TOKEN = "signature-tests-admin-token"
ALIAS = "registry.alias.example.test:5000"
"""Another name the gatekeeper is reached by (``public_aliases``)."""


@dataclass
class Keys:
    release: cosign.PrivateKey
    alice: cosign.PrivateKey
    bob: cosign.PrivateKey
    stranger: cosign.PrivateKey
    sigstore: cosign.PrivateSigstore


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Keys, Path]:
    """Key pairs as ``cosign generate-key-pair`` writes them, read back like cosign reads them."""
    tmp = tmp_path_factory.mktemp("keys")
    loaded = []
    for name, kind in (("release", "p256"), ("alice", "p384"), ("bob", "ed25519")):
        private = cosign.new_key(kind)
        (tmp / f"{name}.key").write_bytes(cosign.encrypt_cosign_key(private, PASSWORD))
        (tmp / f"{name}.pub").write_bytes(cosign.public_pem(private))
        loaded.append(cosign.load_cosign_key((tmp / f"{name}.key").read_bytes(), PASSWORD))
    sigstore = cosign.PrivateSigstore()
    (tmp / "trusted_root.json").write_text(json.dumps(sigstore.trusted_root()))
    release, alice, bob = loaded
    return Keys(release, alice, bob, cosign.new_key("p256"), sigstore), tmp


def signature_options(tmp: Path) -> dict[str, Any]:
    return {
        "trusted_root": str(tmp / "trusted_root.json"),
        "signers": [
            {"name": "release-bot", "key_file": str(tmp / "release.pub")},
            {"name": "alice", "key": (tmp / "alice.pub").read_text()},
            {"name": "bob", "key_file": str(tmp / "bob.pub")},
            {"name": "ci", "identity": CI, "issuer": ISSUER},
        ],
        "rules": [
            {
                "name": "keys",
                "repositories": ["sig/key/*"],
                "signers": ["release-bot"],
                "require_tlog": False,
            },
            {"name": "keyless", "repositories": ["sig/keyless/*"], "signers": ["ci"]},
            {"name": "bundles", "repositories": ["sig/bundle/*"], "signers": ["release-bot"]},
            {
                "name": "quorum",
                "repositories": ["sig/quorum/*"],
                "signers": ["release-bot", "alice", "bob"],
                "threshold": 2,
                "require_tlog": False,
            },
        ],
    }


@pytest.fixture(scope="module")
def gk(
    registry: Registry, keys: tuple[Keys, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gatekeeper]:
    _, tmp = keys
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [
                {
                    "name": "signed",
                    "repositories": ["sig/*"],
                    "require": ["config-sanity", "signatures"],
                    "pending": "hold",
                    "hold_seconds": 20,
                }
            ]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps(
            {"config-sanity": {}, "signatures": {"options": signature_options(tmp)}}
        ),
        "GATEKEEPER_ADMIN_TOKEN": ADMIN_TOKEN,
        "GATEKEEPER_PUBLIC_ALIASES": json.dumps([ALIAS]),
    }
    with running_gatekeeper(tmp_path_factory.mktemp("gk-sig"), registry.url, env) as started:
        yield started


@pytest.fixture
def http(gk: Gatekeeper) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gk.url, timeout=60) as client:
        yield client


# -- the happy paths ---------------------------------------------------------------------------


def test_signature_pushed_after_the_image_makes_it_pullable_without_an_admin(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path]
) -> None:
    k, _ = keys
    image = build("sig/key/late")
    digest = image.push(http)
    message = denial(pull(http, image.repo))
    assert "signature.none-trusted" in message and digest in message
    assert (
        "no trusted signature: the image is not signed"
        in (findings(gk, image.repo, digest)["signature.none-trusted"])
    )
    layer = cosign.key_signature(k.release, reference(gk, image.repo), digest)
    sig_digest = cosign.push_signatures(http, image.repo, digest, [layer])
    resp = wait_pull(http, image.repo, 200)
    assert resp.status_code == 200, resp.text
    assert resp.content == image.manifest
    history = [(e["event"], e["actor"]) for e in events(gk, image.repo, digest)]
    assert history[-2:] == [("quarantined", "gatekeeper"), ("passed", "gatekeeper")], history
    # cosign verify reads the signature manifest and its payload through the gatekeeper too.
    sig = http.get(f"/v2/{image.repo}/manifests/{cosign.signature_tag(digest)}", headers=ACCEPT)
    assert sig.status_code == 200 and sig.headers["Docker-Content-Digest"] == sig_digest
    assert http.get(f"/v2/{image.repo}/blobs/{digest_of(layer.payload)}").content == layer.payload


def test_deleted_signature_and_rescan_quarantine_the_image_again(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path]
) -> None:
    k, _ = keys
    image = build("sig/key/revoked")
    layer = cosign.key_signature(k.release, reference(gk, image.repo), image.digest)
    sig_digest = cosign.push_signatures(http, image.repo, image.digest, [layer])
    digest = image.push(http)
    assert pull(http, image.repo).status_code == 200
    assert http.delete(f"/v2/{image.repo}/manifests/{sig_digest}").status_code == 202
    rescan = http.post(
        f"/admin/api/v1/images/{image.repo}@{digest}/rescan",
        json={"reason": "signature revoked"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert rescan.status_code == 202, rescan.text
    message = denial(wait_pull(http, image.repo, 403))
    assert "signature.none-trusted" in message


def test_keyless_signature_from_a_private_deployment(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path]
) -> None:
    k, _ = keys
    image = build("sig/keyless/app")
    cert, key = k.sigstore.issue(CI, ISSUER)
    layer = k.sigstore.keyless_signature(cert, key, reference(gk, image.repo), image.digest)
    cosign.push_signatures(http, image.repo, image.digest, [layer])
    image.push(http)
    resp = pull(http, image.repo)
    assert resp.status_code == 200, resp.text


def test_sigstore_bundle_attached_as_a_referrer(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path]
) -> None:
    k, _ = keys
    image = build("sig/bundle/app")
    digest = image.push(http)
    assert "signature.none-trusted" in denial(pull(http, image.repo))
    cosign.push_bundle(http, image.repo, digest, k.sigstore.key_bundle(k.release, digest))
    resp = wait_pull(http, image.repo, 200)
    assert resp.status_code == 200, resp.text


def test_an_offline_key_bundle_counts_where_the_rule_needs_no_log(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path]
) -> None:
    """A v0.3 bundle of a key signature made offline (no transparency-log entry) pushed as a
    referrer: it passes under the ``keys`` rule (``require_tlog = false``), as the same key's
    ``.sig`` tag does, and not under ``bundles``, which requires the log."""
    k, _ = keys
    offline = build("sig/key/offline-bundle")
    digest = offline.push(http)
    assert "signature.none-trusted" in denial(pull(http, offline.repo))
    bundle = k.sigstore.key_bundle(k.release, digest, logged=False)
    cosign.push_bundle(http, offline.repo, digest, bundle)
    resp = wait_pull(http, offline.repo, 200)
    assert resp.status_code == 200, resp.text
    strict = build("sig/bundle/offline")
    strict_digest = strict.push(http)
    strict_bundle = k.sigstore.key_bundle(k.release, strict_digest, logged=False)
    cosign.push_bundle(http, strict.repo, strict_digest, strict_bundle)
    deadline = time.monotonic() + 30  # the referrer's push re-verifies the image
    while "signature.tlog-missing" not in findings(gk, strict.repo, strict_digest):
        assert time.monotonic() < deadline, findings(gk, strict.repo, strict_digest)
        time.sleep(0.2)
    assert "signature.tlog-missing" in denial(pull(http, strict.repo))


def test_two_of_three_signers(gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path]) -> None:
    k, _ = keys
    image = build("sig/quorum/app")
    ref = reference(gk, image.repo)
    cosign.push_signatures(
        http, image.repo, image.digest, [cosign.key_signature(k.alice, ref, image.digest)]
    )
    digest = image.push(http)
    message = denial(pull(http, image.repo))
    assert "signature.threshold-not-met" in message
    assert (
        "2 of 3 trusted signers must sign; 1 did (alice)"
        in (findings(gk, image.repo, digest)["signature.threshold-not-met"])
    )
    both = [cosign.key_signature(s, ref, digest) for s in (k.alice, k.bob)]
    cosign.push_signatures(http, image.repo, digest, both)
    assert wait_pull(http, image.repo, 200).status_code == 200


# -- each failure leaves its reason on the verdict ---------------------------------------------


def _swap_signature(layer: cosign.SigLayer, signature: str) -> cosign.SigLayer:
    return cosign.SigLayer(
        layer.payload, {**layer.annotations, "dev.cosignproject.cosign/signature": signature}
    )


def _resigned(key: cosign.PrivateKey, body: bytes) -> cosign.SigLayer:
    signature = base64.b64encode(cosign.sign(key, body)).decode()
    return cosign.SigLayer(body, {"dev.cosignproject.cosign/signature": signature})


def _deep_annotation(layer: cosign.SigLayer) -> cosign.SigLayer:
    """The transparency-log annotation with a member nested 100,000 levels deep: Python's
    parser raised RecursionError on it, out of the keyless path."""
    bundle = layer.annotations["dev.sigstore.cosign/bundle"]
    deep = bundle[:-1] + ',"Extra":' + "[" * 100_000 + "]" * 100_000 + "}"
    return cosign.SigLayer(layer.payload, {**layer.annotations, "dev.sigstore.cosign/bundle": deep})


def _case(name: str, k: Keys, ref: str, digest: str, other: str) -> cosign.SigLayer | None:
    good = cosign.key_signature(k.release, ref, digest)
    good_sig = base64.b64decode(good.annotations["dev.cosignproject.cosign/signature"])
    past = datetime.now(UTC) - timedelta(hours=3)
    cases: dict[str, Any] = {
        "no signature": lambda: None,
        "untrusted key": lambda: cosign.key_signature(k.stranger, ref, digest),
        "tampered payload": lambda: cosign.SigLayer(
            good.payload.replace(b'"optional":null', b'"optional":{"x":1}'), good.annotations
        ),
        "payload for another digest": lambda: cosign.key_signature(k.release, ref, other),
        "signed for another repository": lambda: cosign.key_signature(
            k.release, ref.replace("/sig/key/", "/sig/other/"), digest
        ),
        "malformed base64": lambda: _swap_signature(good, "@@not-base64@@"),
        "truncated DER": lambda: _swap_signature(
            good, base64.b64encode(good_sig[: len(good_sig) // 2]).decode()
        ),
        "payload not JSON": lambda: _resigned(k.release, b"<xml>" + digest.encode() + b"</xml>"),
        "10 MB payload": lambda: _resigned(k.release, b" " * (10 * 1024 * 1024) + good.payload),
        "expired certificate": lambda: k.sigstore.keyless_signature(
            *k.sigstore.issue(CI, ISSUER, not_before=past), ref, digest
        ),
        "wrong issuer": lambda: k.sigstore.keyless_signature(
            *k.sigstore.issue(CI, "https://accounts.evil.test"), ref, digest
        ),
        "wrong identity": lambda: k.sigstore.keyless_signature(
            *k.sigstore.issue("mallory@evil.test", ISSUER), ref, digest
        ),
        "deeply nested log annotation": lambda: _deep_annotation(
            k.sigstore.keyless_signature(*k.sigstore.issue(CI, ISSUER), ref, digest)
        ),
        "signed for another registry": lambda: cosign.key_signature(
            k.release, "registry.elsewhere.example/" + ref.split("/", 1)[1], digest
        ),
        "signed without a registry host": lambda: cosign.key_signature(
            k.release, ref.split("/", 1)[1], digest
        ),
        "deeply nested payload": lambda: _resigned(
            k.release, good.payload[:-1] + b',"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
        ),
    }
    layer: cosign.SigLayer | None = cases[name]()
    return layer


CASES = {
    # case: (repository, rule id of the signature's own finding, words of its title)
    "no signature": ("sig/key/unsigned", None, "the image is not signed"),
    "untrusted key": ("sig/key/stranger", "signature.untrusted-key", "no trusted key verifies"),
    "tampered payload": ("sig/key/tampered", "signature.untrusted-key", "payload was changed"),
    "payload for another digest": (
        "sig/key/otherdigest",
        "signature.payload-digest-mismatch",
        "the payload signs sha256:",
    ),
    "signed for another repository": (
        "sig/key/otherrepo",
        "signature.reference-mismatch",
        "/sig/other/otherrepo, not for",
    ),
    "malformed base64": ("sig/key/b64", "signature.malformed", "not base64"),
    "truncated DER": ("sig/key/der", "signature.malformed", "not well-formed"),
    "payload not JSON": ("sig/key/notjson", "signature.payload-not-json", "not JSON"),
    "10 MB payload": ("sig/key/huge", "signature.payload-too-large", "the limit is 1048576"),
    "expired certificate": (
        "sig/keyless/expired",
        "signature.certificate-expired",
        "not at signing time",
    ),
    "wrong issuer": ("sig/keyless/issuer", "signature.issuer-mismatch", "trusted only from issuer"),
    "wrong identity": ("sig/keyless/identity", "signature.identity-mismatch", "mallory@evil.test"),
    "deeply nested log annotation": (
        "sig/keyless/deep",
        "signature.tlog-invalid",
        "'the transparency log proves the signature' failed: the log bundle annotation is "
        "malformed (nested deeper than 64 levels)",
    ),
    "signed for another registry": (
        "sig/key/otherhost",
        "signature.registry-mismatch",
        "'the payload names this registry' failed: the signature was made for "
        "registry.elsewhere.example/sig/key/otherhost (registry.elsewhere.example), not for "
        "this registry (127.0.0.1:",
    ),
    "signed without a registry host": (
        "sig/key/nohost",
        "signature.registry-mismatch",
        "(no registry host, which means docker.io), not for this registry",
    ),
    "deeply nested payload": (
        "sig/key/deep",
        "signature.payload-not-json",
        "the payload is nested deeper than 64 levels",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_failure_leaves_a_clear_reason(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path], name: str
) -> None:
    k, _ = keys
    repo, rule, words = CASES[name]
    image = build(repo)
    other = build(repo).digest
    layer = _case(name, k, reference(gk, repo), image.digest, other)
    if layer is not None:  # signed first, so the image's first verdict already sees it
        cosign.push_signatures(http, repo, image.digest, [layer])
    digest = image.push(http)
    message = denial(pull(http, repo))
    assert "is quarantined" in message and "signature.none-trusted" in message, message
    found = findings(gk, repo, digest)
    if rule is None:
        assert words in found["signature.none-trusted"]
        return
    assert rule in message, message
    assert rule in found, found
    assert words in found[rule], found[rule]
    assert found[rule].startswith("step '"), "the title names the step that failed"


def test_payload_altered_in_registry_storage(
    gk: Gatekeeper, registry: Registry, http: httpx.Client, keys: tuple[Keys, Path]
) -> None:
    """Bytes changed behind the registry's back no longer match the layer digest."""
    k, _ = keys
    image = build("sig/key/storage")
    digest = image.push(http)
    layer = cosign.key_signature(k.release, reference(gk, image.repo), digest)
    blob = digest_of(layer.payload).split(":")[1]
    path = registry.storage_root / "docker/registry/v2/blobs/sha256" / blob[:2] / blob / "data"
    cosign.push_signatures(http, image.repo, digest, [layer])
    assert wait_pull(http, image.repo, 200).status_code == 200
    path.write_bytes(layer.payload.replace(b"sig/key/storage", b"sig/key/st0rage"))
    rescan = http.post(
        f"/admin/api/v1/images/{image.repo}@{digest}/rescan",
        json={"reason": "storage audit"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert rescan.status_code == 202, rescan.text
    message = denial(wait_pull(http, image.repo, 403))
    assert "signature.payload-blob-mismatch" in message
    assert (
        "altered in storage" in findings(gk, image.repo, digest)["signature.payload-blob-mismatch"]
    )


# -- the admin commands ------------------------------------------------------------------------


def _cli(gk: Gatekeeper, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(gk, *args, timeout=120)


def test_a_signature_for_another_name_of_this_registry_counts(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path]
) -> None:
    """The listed alias and the loopback names (``public_url`` is unset here) are this
    registry; the same signature copied from another registry is not (see the cases above)."""
    k, _ = keys
    for host in (ALIAS, f"localhost:{gk.port}"):
        image = build(f"sig/key/named-{host.split('.')[0].split(':')[0]}")
        ref = f"{host}/{image.repo}"
        cosign.push_signatures(
            http, image.repo, image.digest, [cosign.key_signature(k.release, ref, image.digest)]
        )
        image.push(http)
        resp = pull(http, image.repo)
        assert resp.status_code == 200, resp.text


def test_keys_shows_the_trusted_signers(gk: Gatekeeper) -> None:
    out = _cli(gk, "keys", "--repository", "sig/quorum/app")
    assert out.returncode == 0, out.stderr
    assert "rule quorum: 2 of 3 signers" in out.stdout
    for name, kind in (
        ("release-bot", "ECDSA P-256"),
        ("alice", "ECDSA P-384"),
        ("bob", "Ed25519"),
    ):
        assert any(
            line.strip().startswith(name) and kind in line for line in out.stdout.splitlines()
        )
    names = f"127.0.0.1:{gk.port}, [::1]:{gk.port}, localhost:{gk.port}, {ALIAS}"
    assert f"registry names: {names}" in out.stdout
    data = json.loads(_cli(gk, "keys", "--json").stdout)
    assert ALIAS in data["registry_names"]
    assert [r["rule"] for r in data["rules"]] == ["keys", "keyless", "bundles", "quorum"]
    assert data["rules"][1]["signers"][0]["describe"] == f"keyless {CI} (issuer {ISSUER})"
    missing = _cli(gk, "keys", "--repository", "elsewhere/app")
    assert missing.returncode == 1 and "no signature rule matches" in missing.stdout


def test_verify_prints_each_step(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path]
) -> None:
    k, _ = keys
    image = build("sig/key/cli")
    ref = reference(gk, image.repo)
    layers = [
        cosign.key_signature(k.stranger, ref, image.digest),
        cosign.key_signature(k.release, ref, image.digest),
    ]
    cosign.push_signatures(http, image.repo, image.digest, layers)
    digest = image.push(http)
    out = _cli(gk, "verify", f"{image.repo}@{digest}")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "   1. ok    the payload matches its layer digest" in "\n".join(lines)
    assert any("3. FAIL  the signature verifies with a trusted key" in line for line in lines)
    assert "      => counts as release-bot" in lines
    assert lines[-1] == "result: PASSED"
    unsigned = build("sig/key/cli-unsigned")
    unsigned_digest = unsigned.push(http)
    failed = _cli(gk, "verify", f"{unsigned.repo}@{unsigned_digest}", "--json")
    assert failed.returncode == 1
    report = json.loads(failed.stdout)
    assert report["passed"] is False
    assert report["failures"][0]["rule_id"] == "signature.none-trusted"


def test_bad_trust_settings_stop_start_up_naming_the_field(
    gk: Gatekeeper, fresh_db: Database
) -> None:
    options = {
        "signers": [{"name": "x", "key": "not a key"}],
        "rules": [{"name": "r", "repositories": ["*"], "signers": ["x"]}],
    }
    env = {
        "GATEKEEPER_VERIFIERS": json.dumps({"signatures": {"options": options}}),
        "GATEKEEPER_DATABASE_URL": fresh_db.url,
        "GATEKEEPER_LISTEN": f"127.0.0.1:{free_port()}",
    }
    out = run_cli(gk, "serve", env=env)
    assert out.returncode != 0
    assert "verifiers.signatures.options.signers.0.key: not a PEM public key" in out.stderr
    keys = run_cli(gk, "keys", env=env)
    assert keys.returncode == 2
    assert "verifiers.signatures.options.signers.0.key: not a PEM public key" in keys.stderr


def test_unsigned_image_is_stored_but_not_pullable(http: httpx.Client) -> None:
    digest, _ = push_image(http, "sig/key/plain", "v1", [os.urandom(100)])
    assert digest in denial(pull(http, "sig/key/plain"))


# -- what a pusher writes decides nothing ------------------------------------------------------


def test_a_subject_does_not_exempt_an_unsigned_image(gk: Gatekeeper, http: httpx.Client) -> None:
    """A ``subject`` naming any digest once made an image an "artifact" that needed no
    signature; what it is is now decided from its content."""
    image = build("sig/key/subject")
    doc = json.loads(image.manifest)
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 2}
    for blob in (image.config, image.layer):
        push_blob(http, image.repo, blob)
    resp = http.put(
        f"/v2/{image.repo}/manifests/v1",
        content=json.dumps(doc).encode(),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert resp.status_code == 201, resp.text
    message = denial(pull(http, image.repo))
    assert "signature.none-trusted" in message


def platform_image(http: httpx.Client, repo: str, arch: str) -> tuple[str, bytes]:
    """A platform image podman can unpack, its config naming its architecture."""
    layer, diff_id = tar_layer({f"{arch}.txt": os.urandom(64)})
    config = json.dumps(
        {
            "created": created(),
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    return push_image(http, repo, arch, [layer], config)


def test_a_signed_index_covers_its_platform_images(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[Keys, Path], tmp_path: Path
) -> None:
    """cosign signs the index digest; a client then pulls one platform image by digest. Under
    a signature-requiring policy the signature on the index signs its children too, and podman
    pulls the image through the gate."""
    k, _ = keys
    repo = "sig/key/multi"
    amd, amd_manifest = platform_image(http, repo, "amd64")
    arm, arm_manifest = platform_image(http, repo, "arm64")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": len(body),
                    "platform": {"os": "linux", "architecture": arch},
                }
                for digest, body, arch in (
                    (amd, amd_manifest, "amd64"),
                    (arm, arm_manifest, "arm64"),
                )
            ],
        }
    ).encode()
    put = http.put(f"/v2/{repo}/manifests/v1", content=index, headers={"Content-Type": OCI_INDEX})
    assert put.status_code == 201, put.text
    index_digest = digest_of(index)
    accept = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}
    unsigned = http.get(f"/v2/{repo}/manifests/v1", headers=accept)
    assert "signature.none-trusted" in denial(unsigned)
    denial(http.get(f"/v2/{repo}/manifests/{amd}", headers=accept))
    layer = cosign.key_signature(k.release, reference(gk, repo), index_digest)
    cosign.push_signatures(http, repo, index_digest, [layer])
    for ref in ("v1", amd, arm):
        deadline = time.monotonic() + 30
        while (got := http.get(f"/v2/{repo}/manifests/{ref}", headers=accept)).status_code != 200:
            assert time.monotonic() < deadline, got.text
            time.sleep(0.1)
    (child,) = gk.database.fetch(
        "SELECT state FROM verdicts WHERE repository = :r AND digest = :d", {"r": repo, "d": amd}
    )
    assert child["state"] == "passed"
    with Podman(tmp_path / "podman", [gk.host]) as podman:
        podman.pull(f"{gk.host}/{repo}:v1")  # raises ClientError on failure
        assert podman.image_digest(f"{gk.host}/{repo}:v1") == index_digest
    rows = gk.wait_audit(
        1, "repository = :r AND digest = :d AND action = 'manifest.pull'", {"r": repo, "d": amd}
    )
    assert rows and rows[-1]["decision"] == "allow"
