"""Signatures kept in a signature repository, as cosign stores them with ``COSIGN_REPOSITORY``:
the ``sha256-<hex>.sig`` tag (and the referrers) live in another repository than the image.

Pushed through a real gatekeeper into the real registry: the image is quarantined until its
signature lands in the configured repository, then pullable without an admin; a signature
anywhere else does not count; cosign can read the signature back through the gate.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import cosign
from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.ocihttp import digest_of, push_image
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

SIGS = "sigrepo/sigs/app-x"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[cosign.PrivateKey, Path]:
    tmp = tmp_path_factory.mktemp("keys")
    release = cosign.new_key("p256")
    (tmp / "release.pub").write_bytes(cosign.public_pem(release))
    return release, tmp


@pytest.fixture(scope="module")
def sigstore() -> cosign.PrivateSigstore:
    return cosign.PrivateSigstore()


@pytest.fixture(scope="module")
def gk(
    registry: Registry,
    keys: tuple[cosign.PrivateKey, Path],
    sigstore: cosign.PrivateSigstore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gatekeeper]:
    _, tmp = keys
    (tmp / "trusted_root.json").write_text(json.dumps(sigstore.trusted_root()))
    signed = {"require": ["config-sanity", "signatures"], "pending": "hold", "hold_seconds": 20}
    options = {
        "trusted_root": str(tmp / "trusted_root.json"),
        "signers": [{"name": "release-bot", "key_file": str(tmp / "release.pub")}],
        "rules": [
            {
                "name": "app-x",
                "repositories": ["sigrepo/app/*"],
                "signers": ["release-bot"],
                "require_tlog": False,
                "signature_repository": SIGS,
            },
            {
                "name": "per-repository",
                "repositories": ["sigrepo/team/*"],
                "signers": ["release-bot"],
                "require_tlog": False,
                "signature_repository": "sigrepo/sigs/{repository}",
            },
            {
                "name": "bundles",
                "repositories": ["sigrepo/bundled/*"],
                "signers": ["release-bot"],
                "signature_repository": "sigrepo/sigs/bundled",
            },
        ],
    }
    env = {
        "GATEKEEPER_POLICIES": json.dumps(
            [
                {"name": "signed", "repositories": ["sigrepo/*"], **signed},
                # The signature repository: its artifacts skip both checks and pass; a plain
                # image pushed there has no signature rule, so it stays quarantined.
                {"name": "signature-store", "repositories": ["sigrepo/sigs/*"], **signed},
            ]
        ),
        "GATEKEEPER_VERIFIERS": json.dumps(
            {"config-sanity": {}, "signatures": {"options": options}}
        ),
    }
    gatekeeper = make_gatekeeper(tmp_path_factory.mktemp("gk-sigrepo"), registry.url, extra_env=env)
    yield gatekeeper
    gatekeeper.stop()


@pytest.fixture
def http(gk: Gatekeeper) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gk.url, timeout=60) as client:
        yield client


def test_signature_pushed_to_the_signature_repository_makes_the_image_pullable(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[cosign.PrivateKey, Path]
) -> None:
    release, _ = keys
    image = build("sigrepo/app/x")
    digest = image.push(http)
    message = denial(pull(http, image.repo))
    assert "signature.none-trusted" in message and digest in message
    assert (
        f"no bundle referrer in signature repository {SIGS}"
        in findings(gk, image.repo, digest)["signature.none-trusted"]
    )
    layer = cosign.key_signature(release, reference(gk, image.repo), digest)
    # Pushed to another repository than the image's: the push re-evaluates the digest in every
    # repository that has a verdict for it, without an admin.
    sig_digest = cosign.push_signatures(http, SIGS, digest, [layer])
    resp = wait_pull(http, image.repo, 200)
    assert resp.status_code == 200, resp.text
    assert resp.content == image.manifest
    history = [(e["event"], e["actor"]) for e in events(gk, image.repo, digest)]
    assert history[-2:] == [("quarantined", "gatekeeper"), ("passed", "gatekeeper")], history
    # The signature repository holds no such image: no (phantom) verdict for it there.
    assert events(gk, SIGS, digest) == []
    # cosign verify (COSIGN_REPOSITORY=.../sigrepo/sigs/app-x) reads both through the gate.
    sig = http.get(f"/v2/{SIGS}/manifests/{cosign.signature_tag(digest)}", headers=ACCEPT)
    assert sig.status_code == 200, sig.text
    assert sig.headers["Docker-Content-Digest"] == sig_digest
    assert http.get(f"/v2/{SIGS}/blobs/{digest_of(layer.payload)}").content == layer.payload


def test_a_signature_in_any_other_repository_does_not_count(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[cosign.PrivateKey, Path]
) -> None:
    release, _ = keys
    image = build("sigrepo/app/y")
    layer = cosign.key_signature(release, reference(gk, image.repo), image.digest)
    # Signed first, so the image's first verdict already sees both signatures.
    cosign.push_signatures(http, "sigrepo/sigs/other", image.digest, [layer])
    cosign.push_signatures(http, image.repo, image.digest, [layer])
    digest = image.push(http)
    message = denial(pull(http, image.repo))
    assert "signature.none-trusted" in message
    title = findings(gk, image.repo, digest)["signature.none-trusted"]
    assert title.startswith("no trusted signature: the image is not signed"), title
    assert f"in signature repository {SIGS}" in title


def test_template_names_a_signature_repository_per_image_repository(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[cosign.PrivateKey, Path]
) -> None:
    release, _ = keys
    image = build("sigrepo/team/api")
    layer = cosign.key_signature(release, reference(gk, image.repo), image.digest)
    cosign.push_signatures(http, "sigrepo/sigs/sigrepo/team/web", image.digest, [layer])
    digest = image.push(http)
    assert "signature.none-trusted" in denial(pull(http, image.repo))
    cosign.push_signatures(http, "sigrepo/sigs/sigrepo/team/api", digest, [layer])
    assert wait_pull(http, image.repo, 200).status_code == 200


def test_bundle_referrer_in_the_signature_repository(
    gk: Gatekeeper,
    http: httpx.Client,
    keys: tuple[cosign.PrivateKey, Path],
    sigstore: cosign.PrivateSigstore,
) -> None:
    release, _ = keys
    image = build("sigrepo/bundled/app")
    digest = image.push(http)
    assert "signature.none-trusted" in denial(pull(http, image.repo))
    cosign.push_bundle(http, "sigrepo/sigs/bundled", digest, sigstore.key_bundle(release, digest))
    resp = wait_pull(http, image.repo, 200)
    assert resp.status_code == 200, resp.text


def test_the_signature_repository_serves_signatures_not_images(http: httpx.Client) -> None:
    digest, _ = push_image(http, SIGS, "v1", [b"not a signature" * 10])
    message = denial(pull(http, SIGS))
    assert digest in message and "signature.no-rule" in message


def test_keys_and_verify_name_the_signature_repository(
    gk: Gatekeeper, http: httpx.Client, keys: tuple[cosign.PrivateKey, Path]
) -> None:
    release, _ = keys
    out = _cli(gk, "keys", "--repository", "sigrepo/team/api")
    assert out.returncode == 0, out.stderr
    assert "signatures in sigrepo/sigs/{repository}" in out.stdout
    data = json.loads(_cli(gk, "keys", "--json").stdout)
    assert data["rules"][0]["signature_repository"] == SIGS
    image = build("sigrepo/app/cli")
    layer = cosign.key_signature(release, reference(gk, image.repo), image.digest)
    cosign.push_signatures(http, SIGS, image.digest, [layer])
    digest = image.push(http)
    verified = _cli(gk, "verify", f"{image.repo}@{digest}")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"signatures are stored in {SIGS} (rule app-x)" in verified.stdout
    assert f"cosign tag {SIGS}:{cosign.signature_tag(digest)}, layer 1" in verified.stdout


def _cli(gk: Gatekeeper, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(gk, *args, timeout=120)
