"""``max_manifest_layers`` and ``max_manifest_bytes`` through the real registry: a push over
them is refused with an envelope naming the limit, and an image over them that reached the
registry around the gatekeeper is quarantined (not left pending, not retried) when its first
pull verifies it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, run_cli, wait_state
from tests.support.ocihttp import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    image_config,
    push_blob,
    push_image,
)
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e
LIMIT = 3
MAX_BYTES = 4096


@pytest.fixture(scope="module")
def gk(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gatekeeper]:
    policies = [
        {
            "name": "strict",
            "repositories": ["limits/*"],
            "require": ["config-sanity"],
            "pending": "hold",
            "hold_seconds": 30,
        }
    ]
    gatekeeper = make_gatekeeper(
        tmp_path_factory.mktemp("limits"),
        registry.url,
        extra_env={
            "GATEKEEPER_POLICIES": json.dumps(policies),
            "GATEKEEPER_MAX_MANIFEST_LAYERS": str(LIMIT),
            "GATEKEEPER_MAX_MANIFEST_BYTES": str(MAX_BYTES),
        },
    )
    yield gatekeeper
    gatekeeper.stop()


def many_layers(http: httpx.Client, repo: str, count: int, pad: int = 0) -> bytes:
    """An image manifest listing ``count`` layers (one blob, repeated), its blobs pushed;
    ``pad`` characters of annotation make it larger."""
    blob, config = os.urandom(200), image_config(layers=count)
    push_blob(http, repo, blob)
    push_blob(http, repo, config)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, blob)] * count,
        "annotations": {"pad": "x" * pad},
    }
    return json.dumps(doc).encode()


def test_a_push_over_the_limit_is_refused_naming_it(gk: Gatekeeper) -> None:
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        at_limit = many_layers(http, "limits/app", LIMIT)
        put = http.put(
            "/v2/limits/app/manifests/ok", content=at_limit, headers={"Content-Type": OCI_MANIFEST}
        )
        assert put.status_code == 201, put.text
        over = many_layers(http, "limits/app", LIMIT + 1)
        put = http.put(
            "/v2/limits/app/manifests/big", content=over, headers={"Content-Type": OCI_MANIFEST}
        )
        children = [descriptor(OCI_MANIFEST, at_limit)] * (LIMIT + 1)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
        put_index = http.put(
            "/v2/limits/app/manifests/multi",
            content=index.encode(),
            headers={"Content-Type": OCI_INDEX},
        )
    for refused, key in ((put, "layers"), (put_index, "manifests")):
        assert refused.status_code == 400, refused.text
        (error,) = refused.json()["errors"]
        assert error["code"] == "MANIFEST_INVALID"
        assert error["message"] == (
            f"manifest invalid: {key} lists {LIMIT + 1} entries, more than the {LIMIT} this "
            "registry accepts (setting max_manifest_layers)"
        )
        assert error["detail"]["limit"] == LIMIT and error["detail"]["entries"] == LIMIT + 1
    assert gk.database.fetch("SELECT tag FROM tags WHERE repository = 'limits/app'") == [
        {"tag": "ok"}
    ]


def push_around(registry: Registry, repo: str, count: int, pad: int = 0) -> str:
    """Push straight to the registry, as the gatekeeper never sees; with a small image beside
    it (which the limits must not touch)."""
    with httpx.Client(base_url=registry.url, timeout=60) as direct:
        body = many_layers(direct, repo, count, pad)
        put = direct.put(
            f"/v2/{repo}/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
        assert put.status_code == 201, put.text
        push_image(direct, repo, "small", [os.urandom(100)])
    return str(put.headers["Docker-Content-Digest"])


def assert_refused(gk: Gatekeeper, digest: str, why: str) -> None:
    """Quarantined at the first attempt with one finding saying why; not retried."""
    verdicts = gk.database.fetch("SELECT state FROM verdicts WHERE digest = :d", {"d": digest})
    assert verdicts == [{"state": "quarantined"}]
    (job,) = gk.database.fetch("SELECT state, attempts FROM jobs WHERE digest = :d", {"d": digest})
    assert job == {"state": "done", "attempts": 1}
    (finding,) = gk.database.fetch(
        "SELECT verifier, rule_id, severity, title FROM findings WHERE digest = :d", {"d": digest}
    )
    assert finding == {
        "verifier": "gatekeeper",
        "rule_id": "manifest.refused",
        "severity": "critical",
        "title": why,
    }


def test_too_many_layers_around_the_gatekeeper_are_quarantined_on_first_pull(
    gk: Gatekeeper, registry: Registry
) -> None:
    digest = push_around(registry, "limits/around", LIMIT + 2)
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        resp = http.get("/v2/limits/around/manifests/v1", headers={"Accept": OCI_MANIFEST})
        small = http.get("/v2/limits/around/manifests/small", headers={"Accept": OCI_MANIFEST})
    assert small.status_code == 200, small.text
    assert resp.status_code == 403, resp.text
    why = (
        f"manifest invalid: layers lists {LIMIT + 2} entries, more than the {LIMIT} this "
        "registry accepts (setting max_manifest_layers)"
    )
    (error,) = resp.json()["errors"]
    assert error["code"] == "DENIED" and error["detail"]["state"] == "quarantined"
    assert error["detail"]["reasons"] == [why]
    assert_refused(gk, digest, why)


def test_an_oversized_manifest_around_the_gatekeeper_is_quarantined_when_enrolled(
    gk: Gatekeeper, registry: Registry
) -> None:
    """A pull never serves it (the upstream's answer is over the limit: 502); the verification
    an enrollment (or a rescan) queues quarantines it instead of retrying it forever."""
    digest = push_around(registry, "limits/big", 1, pad=MAX_BYTES)
    out = run_cli(gk, "enroll", "--repository", "limits/big", "--verify-now", timeout=120)
    assert out.returncode == 0, out.stderr
    wait_state(gk, digest)
    why = f"manifest invalid: larger than {MAX_BYTES} bytes (setting max_manifest_bytes)"
    assert_refused(gk, digest, why)
