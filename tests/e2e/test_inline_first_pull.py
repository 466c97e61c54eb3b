"""First pulls verified by the serving process itself, through the real registry.

The gatekeeper runs with no verification workers (``verification.workers = 0``, as a serving
process of ``serve --workers N`` does) and the registry's storage mounted: a first pull under
a policy of light verifiers (config-sanity) is decided while it is held, by the serving
process alone; one under a policy that requires signatures (which read referrers) is queued
for the workers as before, and stays pending until one runs it (here ``enroll --verify-now``).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli
from tests.support.ocihttp import (
    OCI_MANIFEST,
    descriptor,
    digest_of,
    image_config,
    push_blob,
    push_image,
)
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e

POLICIES = [
    {"name": "sane", "repositories": ["inline/*"], "require": ["config-sanity"]},
    {
        "name": "signed",
        "repositories": ["signed/*"],
        "require": ["config-sanity", "signatures"],
        # No worker runs its verification: a pull is held this long for nothing.
        "hold_seconds": 2,
    },
]
BROKEN = json.dumps({"architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []}})
"""No ``os``, and no layer where the manifest lists one: config-sanity quarantines it."""
ACCEPT = {"Accept": OCI_MANIFEST}


def _public_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    signatures = {
        "signers": [{"name": "release", "key": _public_key()}],
        "rules": [
            {
                "name": "signed",
                "repositories": ["signed/*"],
                "signers": ["release"],
                "require_tlog": False,
            }
        ],
    }
    env = {
        "GATEKEEPER_POLICIES": json.dumps(POLICIES),
        "GATEKEEPER_VERIFIERS": json.dumps(
            {"config-sanity": {}, "signatures": {"options": signatures}}
        ),
        "GATEKEEPER_VERIFICATION__WORKERS": "0",
        "GATEKEEPER_VERIFICATION__FIRST_PULL_HOLD_SECONDS": "2",
    }
    workdir: Path = tmp_path_factory.mktemp("inline")
    started = make_gatekeeper(
        workdir, registry.url, storage_root=registry.storage_root, extra_env=env
    )
    try:
        yield started
    finally:
        started.stop()


def around(registry: Registry, repo: str, config: bytes | None = None) -> tuple[str, bytes, bytes]:
    """An image pushed straight into the registry: the gatekeeper never saw it."""
    layer = os.urandom(600)
    with httpx.Client(base_url=registry.url, timeout=60) as direct:
        digest, manifest = push_image(direct, repo, "v1", [layer], config or image_config({}))
    return digest, manifest, layer


def job_of(gk: Gatekeeper, digest: str) -> dict[str, object]:
    rows = gk.database.fetch(
        "SELECT state, lease_owner, attempts FROM jobs WHERE digest = :d", {"d": digest}
    )
    assert len(rows) == 1, rows
    return rows[0]


def events_of(gk: Gatekeeper, digest: str) -> list[str]:
    rows = gk.database.fetch(
        "SELECT event FROM verdict_events WHERE digest = :d ORDER BY id", {"d": digest}
    )
    return [r["event"] for r in rows]


def test_a_failing_first_pull_is_quarantined_by_the_serving_process(
    gk: Gatekeeper, registry: Registry
) -> None:
    digest, _, layer = around(registry, "inline/bad", BROKEN.encode())
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        resp = http.get("/v2/inline/bad/manifests/v1", headers=ACCEPT)
        assert resp.status_code == 403, resp.text
        error = resp.json()["errors"][0]
        assert error["detail"]["state"] == "quarantined" and error["detail"]["policy"] == "sane"
        assert "config.missing-os" in resp.text or "no os" in resp.text
        assert http.get(f"/v2/inline/bad/manifests/{digest}", headers=ACCEPT).status_code == 403
        assert http.get(f"/v2/inline/bad/blobs/{digest_of(layer)}").status_code == 403
    assert events_of(gk, digest) == ["pending", "quarantined"]
    job = job_of(gk, digest)
    # Run, and finished, by the serving process: there is no worker to have done it.
    assert job["state"] == "done" and job["lease_owner"] and job["attempts"] == 1


def test_a_passing_first_pull_is_served_at_once(gk: Gatekeeper, registry: Registry) -> None:
    digest, manifest, layer = around(registry, "inline/good")
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        head = http.head("/v2/inline/good/manifests/v1", headers=ACCEPT)
        assert head.status_code == 200, head.text
        resp = http.get("/v2/inline/good/manifests/v1", headers=ACCEPT)
        assert resp.status_code == 200 and resp.content == manifest
        assert http.get(f"/v2/inline/good/blobs/{digest_of(layer)}").status_code == 200
    assert events_of(gk, digest) == ["pending", "passed"]
    assert job_of(gk, digest)["state"] == "done"
    stored = gk.database.fetch(
        "SELECT content_kind FROM manifests WHERE digest = :d", {"d": digest}
    )
    assert stored == [{"content_kind": "image"}], "indexed as a worker would have"


def test_a_policy_requiring_signatures_still_goes_through_the_workers(
    gk: Gatekeeper, registry: Registry
) -> None:
    digest, _, _ = around(registry, "signed/app")
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        resp = http.get("/v2/signed/app/manifests/v1", headers=ACCEPT)
    assert resp.status_code == 403, resp.text
    assert resp.json()["errors"][0]["detail"]["state"] == "pending"
    assert "Retry-After" in resp.headers
    job = job_of(gk, digest)
    assert job["state"] == "queued" and job["lease_owner"] is None, "left to the workers"
    out = run_cli(gk, "enroll", "--repository", "signed/app", "--verify-now", timeout=120)
    assert out.returncode == 0, out.stderr
    assert events_of(gk, digest) == ["pending", "quarantined"]  # unsigned
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        again = http.get("/v2/signed/app/manifests/v1", headers=ACCEPT)
    assert again.status_code == 403 and "signature" in again.text.lower()


def _tar_with(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_labels_claiming_an_artifact_do_not_let_an_image_through(
    gk: Gatekeeper, registry: Registry
) -> None:
    """The pusher labels an image (a tar layer, a broken config) as an artifact of some type:
    the inline path decides from the content, exactly as a worker does, and denies it."""
    layer = _tar_with("bin/tool", os.urandom(300))
    config = BROKEN.encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.harmless",
            "config": descriptor("application/vnd.example.harmless.config", config),
            "layers": [descriptor("application/vnd.example.harmless.data", layer)],
        }
    ).encode()
    with httpx.Client(base_url=registry.url, timeout=60) as direct:
        push_blob(direct, "inline/labelled", config)
        push_blob(direct, "inline/labelled", layer)
        put = direct.put(
            "/v2/inline/labelled/manifests/v1",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, put.text
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        resp = http.get("/v2/inline/labelled/manifests/v1", headers=ACCEPT)
        assert resp.status_code == 403, resp.text
        assert resp.json()["errors"][0]["detail"]["state"] == "quarantined"
        assert http.get(f"/v2/inline/labelled/blobs/{digest_of(layer)}").status_code == 403
    assert events_of(gk, digest_of(manifest)) == ["pending", "quarantined"]
    assert job_of(gk, digest_of(manifest))["state"] == "done"
