"""Manifests by tag resolved from the registry's mounted storage (``proxy.registry_files``):
the tag's link read as the registry reads it, then served as that digest, with exactly the
gate decisions of a round trip, and the registry asked whenever the files cannot answer alone.

What proves an answer came from the files: its access-log row has no upstream status (the
registry was not asked), and in the last test the registry is stopped. Tags move (a push), go
(a delete) and are tampered with on disk here, and a registry in proxy mode, whose tags are
its remote's, is always asked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper, wait_state
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, push_image
from tests.support.pullthrough import Registries, publish, start_registries
from tests.support.registry import Registry, make_registry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

ACCEPT = {"Accept": f"{OCI_MANIFEST}, application/vnd.oci.image.index.v1+json"}
POLICIES = [
    {
        "name": "tagged",
        "repositories": ["*"],
        "require": ["config-sanity"],
        "pending": "hold",
        "hold_seconds": 20,
    }
]
PULLS = "path = :p AND action IN ('manifest.pull', 'manifest.head')"
"""Access-log rows of pulls of one path (a push of a tag has the same path)."""
ENV = {
    "GATEKEEPER_POLICIES": json.dumps(POLICIES),
    "GATEKEEPER_VERIFIERS": json.dumps({"config-sanity": {}}),
}


@dataclass(frozen=True)
class World:
    registry: Registry
    gk: Gatekeeper
    passed: str
    passed_manifest: bytes
    quarantined: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.gk.url, timeout=30)

    def tag_link(self, name: str, tag: str) -> Path:
        repositories = self.registry.storage_root / "docker/registry/v2/repositories"
        return repositories / name / "_manifests/tags" / tag / "current/link"

    def push(self, name: str, tag: str, *, good: bool = True) -> str:
        """Push an image (one that passes, or one config-sanity quarantines), verified."""
        config = image_config(layers=1 if good else 2)
        with self.client() as http:
            digest, _ = push_image(http, name, tag, [os.urandom(512)], config)
        assert wait_state(self.gk, digest) == ("passed" if good else "quarantined")
        return digest

    def row(self, path: str, count: int = 1) -> dict[str, Any]:
        rows = self.gk.wait_audit(count, PULLS, {"p": path})
        assert len(rows) >= count, rows
        return rows[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A registry of its own (the last test stops it) and a gatekeeper reading its storage."""
    workdir = tmp_path_factory.mktemp("tags")
    registry = make_registry(workdir / "registry")
    gk = make_gatekeeper(
        workdir / "gk", registry.url, storage_root=registry.storage_root, extra_env=ENV
    )
    try:
        with httpx.Client(base_url=gk.url, timeout=30) as http:
            passed, manifest = push_image(http, "tagged/app", "good", [os.urandom(4096)])
            quarantined, _ = push_image(
                http, "tagged/app", "bad", [os.urandom(4096)], image_config(layers=2)
            )
        assert wait_state(gk, passed) == "passed"
        assert wait_state(gk, quarantined) == "quarantined"
        yield World(registry, gk, passed, manifest, quarantined)
    finally:
        gk.stop()
        registry.stop()


def test_a_tag_is_answered_from_storage_as_its_digest(world: World) -> None:
    path = "/v2/tagged/app/manifests/good"
    with world.client() as http:
        got = http.get(path, headers=ACCEPT)
        head = http.head(path, headers=ACCEPT)
        cached = http.get(path, headers={**ACCEPT, "If-None-Match": f'"{world.passed}"'})
        stale = http.get(path, headers={**ACCEPT, "If-None-Match": f'"{world.quarantined}"'})
    assert got.status_code == 200 and got.content == world.passed_manifest
    assert got.headers["Content-Type"] == OCI_MANIFEST
    assert got.headers["Docker-Content-Digest"] == world.passed
    assert got.headers["ETag"] == f'"{world.passed}"'
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(world.passed_manifest))
    assert head.headers["Docker-Content-Digest"] == world.passed
    assert cached.status_code == 304 and cached.headers["Docker-Content-Digest"] == world.passed
    assert stale.status_code == 200 and stale.content == world.passed_manifest
    rows = world.gk.wait_audit(4, PULLS, {"p": path})
    assert [r["decision"] for r in rows] == ["allow:stored"] * 4
    assert [r["upstream_status"] for r in rows] == [None] * 4
    assert {(r["reference"], r["digest"]) for r in rows} == {("good", world.passed)}


def test_a_quarantined_image_by_tag_is_denied_without_asking_the_registry(world: World) -> None:
    path = "/v2/tagged/app/manifests/bad"
    with world.client() as http:
        answers = [
            http.get(path, headers=ACCEPT),
            http.head(path, headers=ACCEPT),
            http.get(path, headers={**ACCEPT, "If-None-Match": f'"{world.quarantined}"'}),
        ]
    assert [a.status_code for a in answers] == [403, 403, 403]
    error = answers[0].json()["errors"][0]
    assert error["code"] == "DENIED" and error["detail"]["digest"] == world.quarantined
    assert b'"layers"' not in answers[0].content
    rows = world.gk.wait_audit(3, PULLS, {"p": path})
    assert [r["decision"] for r in rows] == ["deny"] * 3
    assert {(r["digest"], r["upstream_status"]) for r in rows} == {(world.quarantined, None)}


def test_a_tag_moved_by_a_push_is_served_as_its_new_digest(world: World) -> None:
    path = "/v2/tagged/moving/manifests/v1"
    first = world.push("tagged/moving", "v1")
    with world.client() as http:
        assert http.get(path, headers=ACCEPT).headers["Docker-Content-Digest"] == first
        second = world.push("tagged/moving", "v1")
        moved = http.get(path, headers=ACCEPT)
        assert moved.status_code == 200 and digest_of(moved.content) == second
        assert moved.headers["Docker-Content-Digest"] == second
        quarantined = world.push("tagged/moving", "v1", good=False)
        denied = http.get(path, headers=ACCEPT)
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["detail"]["digest"] == quarantined
    rows = world.gk.wait_audit(3, PULLS, {"p": path})
    assert [(r["digest"], r["decision"]) for r in rows] == [
        (first, "allow:stored"),
        (second, "allow:stored"),
        (quarantined, "deny"),
    ]


def test_a_deleted_tag_is_the_registrys_404(world: World) -> None:
    """Deleting the manifest removes its tags (Distribution 2.8): no link, so the registry is
    asked, and its 404 stands."""
    path = "/v2/tagged/gone/manifests/v1"
    digest = world.push("tagged/gone", "v1")
    with world.client() as http:
        assert http.get(path, headers=ACCEPT).status_code == 200
        assert http.delete(f"/v2/tagged/gone/manifests/{digest}").status_code == 202
        gone = http.get(path, headers=ACCEPT)
    assert gone.status_code == 404
    assert gone.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert world.row(path, 2)["upstream_status"] == 404


def test_a_link_tampered_to_name_a_quarantined_image_is_denied(world: World) -> None:
    """Whatever a tag's link says, the digest it names passes the gate or nothing leaves."""
    path = "/v2/tagged/app/manifests/relabelled"
    with world.client() as http:
        assert http.put(
            path, content=world.passed_manifest, headers={"Content-Type": OCI_MANIFEST}
        ).is_success
        world.tag_link("tagged/app", "relabelled").write_text(world.quarantined)
        resp = http.get(path, headers=ACCEPT)
    assert resp.status_code == 403 and b'"layers"' not in resp.content
    row = world.row(path)
    assert (row["decision"], row["digest"]) == ("deny", world.quarantined)


@pytest.mark.parametrize(
    "tamper",
    ["garbage", "newline", "another-repository", "symlink"],
)
def test_a_link_not_believed_goes_to_the_registry(world: World, tamper: str) -> None:
    """A link that is not exactly a digest this repository holds, or that is a symbolic link,
    is not believed: the registry is asked, and whatever it answers stands."""
    name, tag = "tagged/tampered", f"t-{tamper}"
    path = f"/v2/{name}/manifests/{tag}"
    world.push(name, tag)
    other = world.push("tagged/elsewhere", "x")  # bytes this repository does not link
    link = world.tag_link(name, tag)
    digest = link.read_text()
    if tamper == "garbage":
        link.write_text("sha256:not-a-digest")
    elif tamper == "newline":
        link.write_text(digest + "\n")
    elif tamper == "another-repository":
        link.write_text(other)
    else:
        planted = link.parent / "planted"
        planted.write_text(digest)
        link.unlink()
        link.symlink_to(planted)
    with world.client() as http:
        resp = http.get(path, headers=ACCEPT)
    row = world.row(path)
    assert row["upstream_status"] is not None, row
    assert not str(row["decision"]).endswith(":stored")
    if tamper == "another-repository":
        assert resp.status_code == 404  # the registry's answer: not in this repository
    if resp.status_code == 200:  # the registry followed what it read: still gated
        assert row["digest"] == digest_of(resp.content) and row["decision"] == "allow"


def test_a_client_that_does_not_accept_the_type_gets_the_registrys_answer(world: World) -> None:
    """Distribution refuses an OCI manifest to a client that does not list its type (and
    rewrites a Docker schema 2 one as schema 1 for it): that is the registry's to say."""
    path = "/v2/tagged/app/manifests/good"
    headers = {"Accept": "application/json"}
    with world.client() as http, httpx.Client(base_url=world.registry.url) as direct:
        via = http.get(path, headers=headers)
        registry = direct.get(path, headers=headers)
    assert via.status_code == registry.status_code == 404
    assert via.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    row = world.gk.wait_audit(1, PULLS + " AND upstream_status = 404", {"p": path})
    assert row, "the registry was not asked"


def test_tags_are_answered_with_the_registry_stopped(world: World) -> None:
    """Last in the module: it stops the registry. A tag still resolves (passed: served;
    quarantined: DENIED); a tag that is not there needs the registry and fails."""
    world.registry.stop()
    with world.client() as http:
        good = http.get("/v2/tagged/app/manifests/good", headers=ACCEPT)
        bad = http.get("/v2/tagged/app/manifests/bad", headers=ACCEPT)
        missing = http.get("/v2/tagged/app/manifests/nowhere", headers=ACCEPT)
    assert good.status_code == 200 and good.content == world.passed_manifest
    assert bad.status_code == 403 and bad.json()["errors"][0]["code"] == "DENIED"
    assert missing.status_code >= 500


# -- a registry in proxy mode: its tags are its remote's ---------------------------------------


@pytest.fixture(scope="module")
def pullthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    started = start_registries(tmp_path_factory.mktemp("tags-pullthrough"))
    yield started
    started.stop()


def through(gk: Gatekeeper, path: str) -> str:
    """The digest a pull by tag gets (a first pull waits for its verification)."""
    with httpx.Client(base_url=gk.url, timeout=60) as http:
        resp = http.get(path, headers=ACCEPT)
    assert resp.status_code == 200, resp.text
    return digest_of(resp.content)


@pytest.mark.parametrize("remotes", ["configured", "not-configured"])
def test_a_pull_through_registry_is_asked_for_tags(
    pullthrough: Registries, tmp_path_factory: pytest.TempPathFactory, remotes: str
) -> None:
    """The tag moves on the remote: the pull by tag must see it move, which only the registry
    (asking its remote) can tell. With ``remotes`` configured the gatekeeper knows; without,
    the registry's expiry schedule in its storage gives its proxy mode away."""
    env = dict(ENV)
    if remotes == "configured":
        env["GATEKEEPER_REMOTES"] = json.dumps(
            [{"name": "hub", "url": pullthrough.front.url, "repositories": ["*"]}]
        )
    storage = pullthrough.cache.storage_root
    gk = make_gatekeeper(
        tmp_path_factory.mktemp(f"gk-{remotes}"),
        pullthrough.cache.url,
        storage_root=storage,
        extra_env=env,
    )
    try:
        repository = f"library/moving-{remotes}"
        path = f"/v2/{repository}/manifests/1"
        first = publish(pullthrough.public, repository, "1", {"etc/v": b"one\n"})
        assert through(gk, path) == first.digest
        if remotes == "not-configured":
            state = storage / "scheduler-state.json"  # written within 5 s of a fetch
            wait_until(state.exists, timeout=30, what="the registry's expiry schedule")
        second = publish(pullthrough.public, repository, "1", {"etc/v": b"two\n"})
        assert second.digest != first.digest
        assert through(gk, path) == second.digest
        rows = gk.wait_audit(2, PULLS + " AND status = 200", {"p": path})
        assert [r["upstream_status"] for r in rows] == [200, 200]
    finally:
        gk.stop()
