"""Manifests by digest and blobs from the registry's mounted storage, without a round trip to
the registry, and with exactly the gate decisions of a round trip (``proxy.registry_files``).

The proof that nothing went upstream: the registry is stopped, and the pulls by digest still
get their answers (and their access-log rows say no upstream status); a pull of a tag the
storage does not hold, which only the registry could answer, then fails. Tags resolved from the
storage have their own tests (``test_stored_tags.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, wait_state
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, push_image
from tests.support.registry import Registry, make_registry

pytestmark = pytest.mark.e2e

ACCEPT = {"Accept": f"{OCI_MANIFEST}, application/vnd.oci.image.index.v1+json"}
POLICIES = [
    {
        "name": "stored",
        "repositories": ["stored/*"],
        "require": ["config-sanity"],
        "pending": "hold",
        "hold_seconds": 20,
    }
]


@dataclass(frozen=True)
class World:
    registry: Registry
    gk: Gatekeeper
    passed: str
    passed_manifest: bytes
    passed_layer: bytes
    quarantined: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A registry of its own (the tests stop it) and a gatekeeper reading its storage; one
    image that passed and one quarantined by config-sanity (two diff_ids for one layer)."""
    workdir = tmp_path_factory.mktemp("stored")
    registry = make_registry(workdir / "registry")
    gk = make_gatekeeper(
        workdir / "gk",
        registry.url,
        storage_root=registry.storage_root,
        extra_env={
            "GATEKEEPER_POLICIES": json.dumps(POLICIES),
            "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}}),
        },
    )
    try:
        with httpx.Client(base_url=gk.url, timeout=30) as http:
            layer = os.urandom(4096)
            passed, manifest = push_image(http, "stored/app", "good", [layer])
            quarantined, _ = push_image(
                http, "stored/app", "bad", [os.urandom(4096)], image_config(layers=2)
            )
        assert wait_state(gk, passed) == "passed"
        assert wait_state(gk, quarantined) == "quarantined"
        yield World(registry, gk, passed, manifest, layer, quarantined)
    finally:
        gk.stop()
        registry.stop()


def test_manifest_by_digest_is_answered_from_storage(world: World) -> None:
    path = f"/v2/stored/app/manifests/{world.passed}"
    with httpx.Client(base_url=world.gk.url) as http:
        got = http.get(path, headers=ACCEPT)
        head = http.head(path, headers=ACCEPT)
        cached = http.get(path, headers={**ACCEPT, "If-None-Match": f'"{world.passed}"'})
    assert got.status_code == 200 and got.content == world.passed_manifest
    assert digest_of(got.content) == world.passed
    assert got.headers["Content-Type"] == OCI_MANIFEST
    assert got.headers["Docker-Content-Digest"] == world.passed
    assert got.headers["ETag"] == f'"{world.passed}"'
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(world.passed_manifest))
    assert cached.status_code == 304
    rows = world.gk.wait_audit(3, "path = :p", {"p": path})
    assert [r["decision"] for r in rows] == ["allow:stored"] * 3
    assert [r["upstream_status"] for r in rows] == [None] * 3


def test_quarantined_manifest_by_digest_is_denied(world: World) -> None:
    """The file is right there on disk; the gate still says no, HEAD, GET or conditional."""
    path = f"/v2/stored/app/manifests/{world.quarantined}"
    with httpx.Client(base_url=world.gk.url) as http:
        answers = [
            http.get(path, headers=ACCEPT),
            http.head(path, headers=ACCEPT),
            http.get(path, headers={**ACCEPT, "If-None-Match": f'"{world.quarantined}"'}),
        ]
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert answers[0].json()["errors"][0]["code"] == "DENIED"
    assert b'"layers"' not in answers[0].content
    rows = world.gk.wait_audit(3, "path = :p", {"p": path})
    assert [r["decision"] for r in rows] == ["deny"] * 3


def test_manifest_of_another_repository_is_asked_of_the_registry(world: World) -> None:
    """The bytes exist on disk, but repository stored/other does not link them: the
    registry's 404 stands."""
    with httpx.Client(base_url=world.gk.url) as http:
        resp = http.get(f"/v2/stored/other/manifests/{world.passed}", headers=ACCEPT)
    assert resp.status_code == 404
    assert resp.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_without_accept_the_registry_negotiates(world: World) -> None:
    """A client that does not list the manifest's type gets the registry's own answer."""
    path = f"/v2/stored/app/manifests/{world.passed}"
    with httpx.Client(base_url=world.gk.url) as http:
        http.get(path, headers={"Accept": "application/json"})
    rows = world.gk.wait_audit(1, "path = :p AND upstream_status IS NOT NULL", {"p": path})
    assert rows and not str(rows[-1]["decision"]).endswith(":stored")


def test_no_round_trip_with_the_registry_stopped(world: World) -> None:
    """Last in the module: it stops the registry. By digest, manifest and blob still come;
    a tag the storage does not hold needs the registry and fails, and the quarantined digest
    is still DENIED."""
    layer = digest_of(world.passed_layer)
    world.registry.stop()
    with httpx.Client(base_url=world.gk.url, timeout=30) as http:
        manifest = http.get(f"/v2/stored/app/manifests/{world.passed}", headers=ACCEPT)
        blob = http.get(f"/v2/stored/app/blobs/{layer}")
        tagged = http.get("/v2/stored/app/manifests/nowhere", headers=ACCEPT)
        quarantined = http.get(f"/v2/stored/app/manifests/{world.quarantined}", headers=ACCEPT)
    assert manifest.status_code == 200 and manifest.content == world.passed_manifest
    assert blob.status_code == 200 and blob.content == world.passed_layer
    assert tagged.status_code >= 500
    assert quarantined.status_code == 403
    assert quarantined.json()["errors"][0]["code"] == "DENIED"
    rows = world.gk.wait_audit(1, "path = :p", {"p": f"/v2/stored/app/blobs/{layer}"})
    assert str(rows[-1]["decision"]).endswith(":sendfile") and rows[-1]["upstream_status"] is None
