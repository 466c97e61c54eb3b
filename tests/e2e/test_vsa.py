"""Verification summary attestations (issue 18): an image that passes gets a signed SLSA VSA
as a referrer, fetched through the gatekeeper's referrers API with raw HTTP and verified by
implementations that are not the gatekeeper's: securesystemslib's DSSE (the signature, with
the key the gatekeeper serves) and sigstore-models (the Sigstore bundle v0.3 schema). A later
re-quarantine adds a FAILED summary and the referrers stop being served, like the image.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey  # type: ignore[attr-defined]
from sigstore_models.bundle.v1 import Bundle

from tests.support.fixtures import running_gatekeeper
from tests.support.gatekeeper import Gatekeeper, run_cli, wait_state
from tests.support.ocihttp import OCI_MANIFEST, descriptor, image_config, push_blob, push_image
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
VSA = "https://slsa.dev/verification_summary/v1"
POLICIES = [{"name": "vouched", "repositories": ["vsa/*"], "require": ["config-sanity"]}]
TOKEN = "test-admin-token"


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    env = {
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}}),
        "GATEKEEPER_ADMIN_TOKEN": TOKEN,
        "GATEKEEPER_ATTESTATIONS__SUMMARIES": "true",  # off by default in tests
    }
    with running_gatekeeper(tmp_path_factory.mktemp("vsa"), registry.url, env) as started:
        yield started


def _summaries(http: httpx.Client, repo: str, digest: str, timeout: float = 60) -> list[Any]:
    """The summary referrers listed for the image, once at least one is (pushed, indexed
    and verified happen after the verdict)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = http.get(f"/v2/{repo}/referrers/{digest}", params={"artifactType": BUNDLE})
        assert listed.status_code == 200, listed.text
        found = listed.json()["manifests"]
        if found or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.3)


def _pull(http: httpx.Client, path: str, timeout: float = 60) -> httpx.Response:
    """GET through the gatekeeper, waiting out the referrer's own verification."""
    deadline = time.monotonic() + timeout
    while True:
        got = http.get(path, headers={"Accept": OCI_MANIFEST})
        if got.status_code != 403 or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def _bundle_of(http: httpx.Client, repo: str, referrer: str) -> dict[str, Any]:
    manifest = _pull(http, f"/v2/{repo}/manifests/{referrer}")
    assert manifest.status_code == 200, manifest.text
    doc = manifest.json()
    assert doc["artifactType"] == BUNDLE
    (layer,) = doc["layers"]
    blob = http.get(f"/v2/{repo}/blobs/{layer['digest']}")
    assert blob.status_code == 200, blob.text
    return dict(blob.json())


def _independently_verified(gk: Gatekeeper, bundle: dict[str, Any]) -> dict[str, Any]:
    """The statement, verified without the gatekeeper's code."""
    Bundle.from_json(json.dumps(bundle))  # the Sigstore bundle v0.3 schema
    served = httpx.get(f"{gk.url}/keys/gatekeeper.json").json()["keys"][0]
    key = SSlibKey.from_crypto(
        load_pem_public_key(served["pem"].encode()),
        keyid=served["kid"],
    )
    envelope = Envelope.from_dict(json.loads(json.dumps(bundle["dsseEnvelope"])))  # it pops keys
    assert envelope.payload_type == "application/vnd.in-toto+json"
    envelope.verify([key], 1)  # raises VerificationError otherwise
    return dict(json.loads(envelope.payload))


def _forged_copy_fails(gk: Gatekeeper, bundle: dict[str, Any]) -> dict[str, Any]:
    """An altered statement does not verify with the independent implementation either."""
    forged: dict[str, Any] = json.loads(json.dumps(bundle))
    payload = json.loads(base64.b64decode(forged["dsseEnvelope"]["payload"]))
    payload["predicate"]["verificationResult"] = "PASSED "
    forged["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    with pytest.raises(VerificationError):
        _independently_verified(gk, forged)
    return forged


def _cli_verifies_with_the_public_key_only(
    gk: Gatekeeper, tmp_path: Path, ref: str, forged: dict[str, Any]
) -> None:
    """``gatekeeper vsa verify``, given only the public key: over the referrers API, and
    from a file (where the forged copy fails)."""
    digest = ref.split("@", 1)[1]
    pem = tmp_path / "gatekeeper.pem"
    pem.write_text(httpx.get(f"{gk.url}/keys/gatekeeper.pem").text)
    done = run_cli(gk, "vsa", "verify", "--key", str(pem), "--registry", gk.url, ref)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{digest} PASSED" in done.stdout
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    done = run_cli(gk, "vsa", "verify", "--key", str(pem), str(tmp_path / "forged.json"))
    assert done.returncode == 1 and "does not verify" in done.stdout, done.stdout


def test_a_passed_image_has_a_verifiable_summary_and_loses_it_to_a_requarantine(
    gk: Gatekeeper, tmp_path: Path
) -> None:
    repo = "vsa/app"
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        digest, _ = push_image(http, repo, "v1", [os.urandom(1024)], image_config({}))
        assert wait_state(gk, digest) == "passed"
        (listed,) = _summaries(http, repo, digest)
        assert listed["annotations"]["dev.sigstore.bundle.predicateType"] == VSA
        bundle = _bundle_of(http, repo, listed["digest"])
    statement = _independently_verified(gk, bundle)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == VSA
    assert statement["subject"][0]["digest"] == {"sha256": digest.split(":", 1)[1]}
    predicate = statement["predicate"]
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["policy"]["uri"].endswith(":vouched")
    assert len(predicate["policy"]["digest"]["sha256"]) == 64
    assert predicate["resourceUri"].endswith(f"/{repo}@{digest}")
    details = predicate["registryGatekeeper"]
    assert {"name": "config-sanity", "status": "ok"} in details["verifiers"]
    forged = _forged_copy_fails(gk, bundle)
    _cli_verifies_with_the_public_key_only(gk, tmp_path, f"{repo}@{digest}", forged)

    # Re-quarantined: a FAILED summary is signed and pushed; the image's referrers (the old
    # PASSED summary among them) are not served while it may not be pulled.
    ref = f"{repo}@{digest}"
    done = run_cli(
        gk,
        "quarantine",
        "requarantine",
        ref,
        "--reason",
        "withdrawn",
        env={"GATEKEEPER_ADMIN_URL": gk.url},
    )
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 60
    while True:
        shown = run_cli(gk, "vsa", "show", ref)
        lines = shown.stdout.splitlines()
        if sum("FAILED  sha256:" in line for line in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert shown.returncode == 0, shown.stderr
    assert [line.split()[1] for line in lines[:2]] == ["PASSED", "FAILED"], shown.stdout
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        assert http.get(f"/v2/{repo}/referrers/{digest}").status_code == 403
        old = http.get(f"/v2/{repo}/manifests/{listed['digest']}", headers={"Accept": OCI_MANIFEST})
        assert old.status_code == 403, old.text
    failed = json.loads(run_cli(gk, "vsa", "show", ref, "--json").stdout)
    opened = _independently_verified(gk, failed)
    assert opened["predicate"]["verificationResult"] == "FAILED"


def test_a_hostile_bundle_referrer_does_not_carry_an_image_out(gk: Gatekeeper) -> None:
    """A pusher labels a quarantined image's layer as a Sigstore bundle of a passing image:
    the label opens nothing (the content is judged, and its blob belongs to the quarantined
    image)."""
    repo = "vsa/hostile"
    secret = os.urandom(2048)
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        quarantined, _ = push_image(http, repo, "bad", [secret], b"not a config")
        assert wait_state(gk, quarantined) == "quarantined"
        good, good_manifest = push_image(http, repo, "good", [os.urandom(512)], image_config({}))
        assert wait_state(gk, good) == "passed"
        empty = push_blob(http, repo, b"{}")
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": BUNDLE,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": empty,
                "size": 2,
            },
            "layers": [descriptor(BUNDLE, secret)],
            "subject": descriptor(OCI_MANIFEST, good_manifest),
            "annotations": {"dev.sigstore.bundle.predicateType": VSA},
        }
        body = json.dumps(doc).encode()
        put = http.put(
            f"/v2/{repo}/manifests/hostile", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert put.status_code == 201, put.text
        layer = f"/v2/{repo}/blobs/{descriptor(BUNDLE, secret)['digest']}"
        # Watched until every verification the push started has finished (the referrer's
        # own, its subject's re-evaluation, any retry), then a while longer: no moment of it
        # serves the layer.
        hostile = "sha256:" + hashlib.sha256(body).hexdigest()
        settled = None
        deadline = time.monotonic() + 90
        while settled is None or time.monotonic() < settled + 3:
            assert http.get(layer).status_code in (403, 404)
            if settled is None and _settled(gk, repo, hostile):
                settled = time.monotonic()
            assert time.monotonic() < deadline, "the referrer's verification never finished"
            time.sleep(0.25)


def _settled(gk: Gatekeeper, repository: str, digest: str) -> bool:
    """``digest`` has a decided verdict and no job of ``repository`` is queued or running
    (other tests' images share this gatekeeper)."""
    decided = gk.database.fetch(
        "SELECT state FROM verdicts WHERE digest = :d AND state <> 'pending'", {"d": digest}
    )
    busy = gk.database.fetch(
        "SELECT id FROM jobs WHERE repository = :r AND state IN ('queued', 'running')",
        {"r": repository},
    )
    return bool(decided) and not busy
