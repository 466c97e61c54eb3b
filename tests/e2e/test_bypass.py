"""The quarantine bypass catalogue: every way a pusher was found (or could think) to get a
quarantined or held image's bytes to a pull-only identity, each its own test, through the real
registry with authentication on and a real ``secrets`` scan.

Each attempt asserts the same three things: the pull-only identity gets ``DENIED`` with a
reason a person can read, its request has an access-log row with decision ``deny``, and no byte
of the layer arrives. The layer in question carries a freshly generated AWS access key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.bypass import (
    ACCEPT,
    ADMIN,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    EMPTY,
    EMPTY_BLOB,
    OCI_INDEX,
    Accounts,
    Image,
    artifact_doc,
    bypass_gatekeeper,
    clean_layer,
    config_of,
    denied,
    descriptor,
    image_doc,
    last_row,
    leaking_layer,
    make_accounts,
    push_image,
    pushed,
    state_of,
)
from tests.support.gatekeeper import Gatekeeper
from tests.support.ocihttp import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, digest_of, push_blob
from tests.support.registry import Registry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e
HEADERS = {"Accept": ACCEPT}


@dataclass(frozen=True)
class World:
    gk: Gatekeeper
    accounts: Accounts
    quarantined: Image
    """team/app:q: a shared base layer and a layer with an AWS key (quarantined by secrets)."""
    clean: Image
    """team/app:g: the same base layer and a clean top layer (passed)."""

    def client(self, who: dict[str, str]) -> httpx.Client:
        return httpx.Client(base_url=self.gk.url, headers=who, timeout=60)

    @property
    def leak(self) -> bytes:
        return self.quarantined.layers[1]

    @property
    def base(self) -> bytes:
        return self.quarantined.layers[0]


@pytest.fixture(scope="module", params=["streamed", "mounted"])
def world(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    """Every attempt twice: through the registry's API only, and with the registry's storage
    mounted, where manifests by digest and blobs are answered from its files without asking
    the registry (``proxy.registry_files``): that short cut must not be a way out."""
    mounted = (
        {"GATEKEEPER_UPSTREAM_STORAGE_ROOT": str(registry.storage_root)}
        if request.param == "mounted"
        else {}
    )
    with bypass_gatekeeper(tmp_path_factory.mktemp("bypass"), registry.url, **mounted) as gk:
        accounts = make_accounts(gk)
        base = clean_layer("usr/lib/base.txt")
        with httpx.Client(base_url=gk.url, headers=accounts.pusher, timeout=60) as http:
            quarantined = push_image(http, "team/app", "q", [base, leaking_layer()])
            clean = push_image(http, "team/app", "g", [base, clean_layer()])
        assert state_of(gk, "team/app", quarantined.digest) == "quarantined"
        assert state_of(gk, "team/app", clean.digest) == "passed"
        yield World(gk, accounts, quarantined, clean)


def no_layer_bytes(resp: httpx.Response, data: bytes) -> None:
    """The answer is an error envelope, and nothing of the layer is in it."""
    assert resp.status_code >= 400 and len(resp.content) < len(data)
    assert all(data[n : n + 32] not in resp.content for n in range(0, len(data) - 32, 512))


def denied_row(world: World, path: str) -> dict[str, Any]:
    row = last_row(world.gk, "rob", path)
    assert row["decision"] == "deny" and row["status"] == 403, row
    assert row["reason"], row
    return row


# -- the plain ways out ------------------------------------------------------------------------


def test_by_tag_by_digest_and_head(world: World) -> None:
    q = world.quarantined
    with world.client(world.accounts.reader) as reader:
        by_tag = denied(reader.get("/v2/team/app/manifests/q", headers=HEADERS))
        assert q.digest in by_tag and "secret.aws-access-key" in by_tag
        assert denied(reader.get(f"/v2/team/app/manifests/{q.digest}", headers=HEADERS)) == by_tag
        head = reader.head(f"/v2/team/app/manifests/{q.digest}", headers=HEADERS)
        assert head.status_code == 403 and not head.content
    denied_row(world, "/v2/team/app/manifests/q")
    rows = world.gk.wait_audit(2, "identity = 'rob' AND digest = :d", {"d": q.digest})
    assert {r["decision"] for r in rows} == {"deny"}


def test_layer_blob_get(world: World) -> None:
    path = f"/v2/team/app/blobs/{digest_of(world.leak)}"
    with world.client(world.accounts.reader) as reader:
        resp = reader.get(path)
    message = denied(resp)
    assert "secret.aws-access-key" in message or "not part of any verified image" in message
    no_layer_bytes(resp, world.leak)
    denied_row(world, path)


def test_blob_head_tells_a_pusher_but_not_a_pull_only_identity(world: World) -> None:
    path = f"/v2/team/app/blobs/{digest_of(world.leak)}"
    with world.client(world.accounts.reader) as reader:
        refused = reader.head(path)
    assert (refused.status_code == 403 and "Content-Length" not in refused.headers) or (
        refused.headers.get("Content-Length") != str(len(world.leak))
    )
    denied_row(world, path)
    with world.client(world.accounts.pusher) as pusher:
        check = pusher.head(path)
    assert check.status_code == 200 and check.headers["Content-Length"] == str(len(world.leak))
    row = last_row(world.gk, "pia", path)
    assert row["decision"] == "allow" and "may push" in row["reason"]


def test_cross_repository_mount(world: World) -> None:
    leak = digest_of(world.leak)
    path = "/v2/team/mounted/blobs/uploads/"
    with world.client(world.accounts.pusher) as pusher:
        mount = pusher.post(f"{path}?mount={leak}&from=team/app")
    denied(mount)
    row = last_row(world.gk, "pia", path)
    assert row["decision"] == "deny" and row["action"] == "upload.mount"
    with world.client(world.accounts.reader) as reader:
        resp = reader.get(f"/v2/team/mounted/blobs/{leak}")
    assert resp.status_code in (403, 404)
    no_layer_bytes(resp, world.leak)


def test_re_push_elsewhere(world: World) -> None:
    body = json.dumps(world.quarantined.manifest).encode()
    with world.client(world.accounts.pusher) as pusher:
        resp = pusher.put(
            "/v2/team/copy/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST}
        )
    assert "cannot be pushed elsewhere" in denied(resp)


# -- relabelling the quarantined content -------------------------------------------------------


def relabelled(world: World, how: str) -> tuple[dict[str, Any], str]:
    """A new manifest listing the quarantined config and layer under other labels."""
    q = world.quarantined
    config, leak = q.config, world.leak
    if how == "empty-config":
        return {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(EMPTY, config),
            "layers": [descriptor(OCI_LAYER, leak)],
        }, OCI_MANIFEST
    if how == "custom-config":
        return {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/x-anything", config),
            "layers": [descriptor(OCI_LAYER, leak)],
        }, OCI_MANIFEST
    if how == "layer-as-spdx":
        return {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [descriptor("text/spdx", leak)],
        }, OCI_MANIFEST
    if how == "artifact-type":
        return {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "config": descriptor(EMPTY, EMPTY_BLOB),
            "layers": [descriptor("application/vnd.dev.sigstore.bundle.v0.3+json", leak)],
        }, OCI_MANIFEST
    if how == "subject":
        clean = world.clean
        subject = descriptor(OCI_MANIFEST, json.dumps(clean.manifest).encode())
        assert subject["digest"] == clean.digest
        return {**image_doc(config, [world.base, leak]), "subject": subject}, OCI_MANIFEST
    if how == "docker-octet-stream":
        return {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor("application/octet-stream", config),
            "layers": [descriptor(DOCKER_LAYER, leak)],
        }, DOCKER_MANIFEST
    raise AssertionError(how)


RELABELLINGS = [
    "empty-config",
    "custom-config",
    "layer-as-spdx",
    "artifact-type",
    "subject",
    "docker-octet-stream",
]


@pytest.mark.parametrize("how", RELABELLINGS)
def test_relabelled_in_a_new_manifest(world: World, how: str) -> None:
    doc, media_type = relabelled(world, how)
    repo = "team/app" if how == "subject" else f"other/{how}"
    leak = digest_of(world.leak)
    with world.client(world.accounts.pusher) as pusher:
        for blob in (world.quarantined.config, world.leak, world.base, EMPTY_BLOB):
            push_blob(pusher, repo, blob)  # the pusher has the bytes: it pushed them first
        digest = pushed(pusher, repo, how, doc, media_type)
    assert state_of(world.gk, repo, digest) == "quarantined"
    with world.client(world.accounts.reader) as reader:
        message = denied(reader.get(f"/v2/{repo}/manifests/{how}", headers=HEADERS))
        assert "quarantined" in message and "aws-access-key" in message, message
        refused = reader.get(f"/v2/{repo}/blobs/{leak}")
        assert "aws-access-key" in denied(refused) or "not part of" in denied(refused)
        no_layer_bytes(refused, world.leak)
    denied_row(world, f"/v2/{repo}/manifests/{how}")
    denied_row(world, f"/v2/{repo}/blobs/{leak}")
    with world.client(world.accounts.pusher) as pusher:
        denied(pusher.post(f"/v2/other/mount-{how}/blobs/uploads/?mount={leak}&from={repo}"))


# -- holds ------------------------------------------------------------------------------------


def test_a_re_wrapped_held_image_inherits_the_hold(world: World) -> None:
    with world.client(world.accounts.pusher) as pusher:
        held = push_image(pusher, "team/held", "v1", [clean_layer(), clean_layer("etc/x.conf")])
    assert state_of(world.gk, "team/held", held.digest) == "passed"
    with world.client(ADMIN) as admin:
        hold = admin.post(
            f"/admin/api/v1/images/team/held@{held.digest}/requarantine",
            json={"reason": "suspected backdoor in etc/x.conf"},
        )
        assert hold.status_code == 200, hold.text
    with world.client(world.accounts.pusher) as pusher:
        for repo in ("team/held", "other/held-copy"):
            rewrap = {**held.manifest, "annotations": {"org.example.note": f"nothing in {repo}"}}
            for blob in (held.config, *held.layers):
                push_blob(pusher, repo, blob)
            digest = pushed(pusher, repo, "rewrapped", rewrap, OCI_MANIFEST)
            assert state_of(world.gk, repo, digest) == "quarantined"
            layer = digest_of(held.layers[1])
            with world.client(world.accounts.reader) as reader:
                message = denied(reader.get(f"/v2/{repo}/manifests/rewrapped", headers=HEADERS))
                assert "held in quarantine by admin-token" in message, message
                assert "suspected backdoor" in message and held.digest in message
                held_blob = reader.get(f"/v2/{repo}/blobs/{layer}")
                assert "held in quarantine" in denied(held_blob)
                no_layer_bytes(held_blob, held.layers[1])
            denied_row(world, f"/v2/{repo}/manifests/rewrapped")
            denied(pusher.post(f"/v2/other/held-mount/blobs/uploads/?mount={layer}&from={repo}"))
    with world.client(ADMIN) as admin:
        refused = admin.post(
            f"/admin/api/v1/images/other/held-copy@{digest}/release", json={"reason": "mine"}
        )
        assert refused.status_code == 409 and f"release team/held@{held.digest}" in refused.text


def test_releasing_the_held_image_frees_its_re_wraps(world: World) -> None:
    with world.client(world.accounts.pusher) as pusher:
        held = push_image(pusher, "team/held2", "v1", [clean_layer()])
    assert state_of(world.gk, "team/held2", held.digest) == "passed"
    with world.client(ADMIN) as admin:
        url = f"/admin/api/v1/images/team/held2@{held.digest}"
        assert admin.post(f"{url}/requarantine", json={"reason": "look"}).status_code == 200
    rewrap = {**held.manifest, "annotations": {"again": "1"}}
    with world.client(world.accounts.pusher) as pusher:
        digest = pushed(pusher, "team/held2", "rewrapped", rewrap, OCI_MANIFEST)
    assert state_of(world.gk, "team/held2", digest) == "quarantined"
    with world.client(ADMIN) as admin:
        assert admin.post(f"{url}/release", json={"reason": "looked"}).status_code == 200
    with world.client(world.accounts.reader) as reader:
        assert wait_status(reader, "/v2/team/held2/manifests/rewrapped") == 200
        assert reader.get(f"/v2/team/held2/blobs/{digest_of(held.layers[0])}").status_code == 200


def wait_status(client: httpx.Client, path: str, want: int = 200, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    status = 0
    while time.monotonic() < deadline:
        status = client.get(path, headers=HEADERS).status_code
        if status == want:
            break
        time.sleep(0.1)
    return status


def test_a_shared_base_layer_stays_pullable(world: World) -> None:
    """The base layer of the clean image stays pullable although the quarantined image has it
    too, and also once an admin holds a third image built on it."""
    base = digest_of(world.base)
    with world.client(world.accounts.pusher) as pusher:
        other = push_image(pusher, "team/app", "p", [(world.base, ""), clean_layer()])
    assert state_of(world.gk, "team/app", other.digest) in ("passed", "quarantined")
    with world.client(ADMIN) as admin:
        current = state_of(world.gk, "team/app", other.digest)
        if current == "passed":
            url = f"/admin/api/v1/images/team/app@{other.digest}/requarantine"
            assert admin.post(url, json={"reason": "hold it"}).status_code == 200
    with world.client(world.accounts.reader) as reader:
        resp = reader.get(f"/v2/team/app/blobs/{base}")
        assert resp.status_code == 200 and resp.content == world.base
        top = digest_of(other.layers[1])
        denied(reader.get(f"/v2/team/app/blobs/{top}"))


# -- indexes, conditions, referrers -----------------------------------------------------------


def index_of(*children: tuple[str, int, str]) -> dict[str, Any]:
    """An index of (digest, size, media type) children, one platform each."""
    return {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": media_type,
                "digest": digest,
                "size": size,
                "platform": {"os": "linux", "architecture": arch},
            }
            for (digest, size, media_type), arch in zip(
                children, ["amd64", "arm64", "s390x"], strict=False
            )
        ],
    }


def test_an_index_over_a_quarantined_child(world: World) -> None:
    q, g = world.quarantined, world.clean
    q_size = len(json.dumps(q.manifest).encode())
    g_size = len(json.dumps(g.manifest).encode())
    index = index_of((g.digest, g_size, OCI_MANIFEST), (q.digest, q_size, OCI_MANIFEST))
    with world.client(world.accounts.pusher) as pusher:
        inner = pushed(pusher, "team/app", "multi", index, OCI_INDEX)
        size = len(json.dumps(index).encode())
        outer = index_of((inner, size, OCI_INDEX))
        nested = pushed(pusher, "team/app", "nested", outer, OCI_INDEX)
    assert state_of(world.gk, "team/app", inner) == "quarantined"
    assert state_of(world.gk, "team/app", nested) == "quarantined"
    with world.client(world.accounts.reader) as reader:
        message = denied(reader.get("/v2/team/app/manifests/multi", headers=HEADERS))
        assert f"platform image {q.digest} (linux/arm64) is quarantined" in message, message
        assert "aws-access-key" in message
        assert f"platform image {inner}" in denied(
            reader.get("/v2/team/app/manifests/nested", headers=HEADERS)
        )
    denied_row(world, "/v2/team/app/manifests/multi")


def test_conditional_get_passes_the_gate_first(world: World) -> None:
    q, g = world.quarantined, world.clean
    with world.client(world.accounts.reader) as reader:
        refused = reader.get(
            "/v2/team/app/manifests/q", headers={**HEADERS, "If-None-Match": f'"{q.digest}"'}
        )
        denied(refused)
        fresh = reader.get(
            "/v2/team/app/manifests/g", headers={**HEADERS, "If-None-Match": f'"{g.digest}"'}
        )
        assert fresh.status_code == 304 and not fresh.content
        assert fresh.headers["Docker-Content-Digest"] == g.digest
    denied_row(world, "/v2/team/app/manifests/q")
    row = last_row(world.gk, "rob", "/v2/team/app/manifests/g")
    assert row["status"] == 304 and row["digest"] == g.digest
    assert row["decision"] in ("allow", "allow:stored")  # mounted: the tag read from storage


def test_referrers_of_a_quarantined_image(world: World) -> None:
    q = world.quarantined
    sbom = json.dumps({"spdxVersion": "SPDX-2.3", "packages": []}).encode()
    doc = artifact_doc("application/spdx+json", sbom, q.manifest)
    with world.client(world.accounts.pusher) as pusher:
        for blob in (EMPTY_BLOB, sbom):
            push_blob(pusher, "team/app", blob)
        artifact = pushed(pusher, "team/app", "q-sbom", doc, OCI_MANIFEST)
    assert state_of(world.gk, "team/app", artifact) == "quarantined"
    path = f"/v2/team/app/referrers/{q.digest}"
    with world.client(world.accounts.reader) as reader:
        assert "referrers" in denied(reader.get(path))
        message = denied(reader.get(f"/v2/team/app/manifests/{artifact}", headers=HEADERS))
        assert f"the image it is about, {q.digest}, is quarantined" in message
        denied(reader.get(f"/v2/team/app/blobs/{digest_of(sbom)}"))
    denied_row(world, path)
    with world.client(world.accounts.forensics) as forensics:
        listed = forensics.get(path)
        assert listed.status_code == 200
        assert [m["digest"] for m in listed.json()["manifests"]] == [artifact]


# -- verification that cannot be skipped -------------------------------------------------------


def test_a_subject_does_not_make_an_image_an_artifact(world: World) -> None:
    nowhere = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 2}
    leak = leaking_layer()
    with world.client(world.accounts.pusher) as pusher:
        image = push_image(pusher, "other/subject", "v1", [leak], subject=nowhere)
    assert state_of(world.gk, "other/subject", image.digest) == "quarantined"
    with world.client(world.accounts.reader) as reader:
        assert "aws-access-key" in denied(
            reader.get("/v2/other/subject/manifests/v1", headers=HEADERS)
        )
        blob = reader.get(f"/v2/other/subject/blobs/{digest_of(leak[0])}")
        denied(blob)
        no_layer_bytes(blob, leak[0])


UNREADABLE: dict[str, Callable[[str], bytes]] = {
    "over-4-MiB": lambda diff: config_of([diff], padding="x" * (4 * 1024 * 1024 + 1)),
    "json-array": lambda diff: json.dumps([{"os": "linux", "rootfs": [diff]}]).encode(),
    "not-json": lambda diff: b"\x00\x01 this is not json " + diff.encode(),
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_an_unreadable_config_quarantines(world: World, kind: str) -> None:
    leak, diff = leaking_layer()
    config = UNREADABLE[kind](diff)
    repo = f"other/config-{kind.lower()}"
    with world.client(world.accounts.pusher) as pusher:
        for blob in (config, leak):
            push_blob(pusher, repo, blob)
        digest = pushed(pusher, repo, "v1", image_doc(config, [leak]), OCI_MANIFEST)
    assert state_of(world.gk, repo, digest) == "quarantined"
    with world.client(world.accounts.reader) as reader:
        message = denied(reader.get(f"/v2/{repo}/manifests/v1", headers=HEADERS))
        assert "cannot be read" in message, message
        refused = reader.get(f"/v2/{repo}/blobs/{digest_of(leak)}")
        denied(refused)
        no_layer_bytes(refused, leak)


def test_a_referrer_elsewhere_queues_nothing_on_its_subject(world: World) -> None:
    """Push rights on other/* buy no verification work in team/app."""
    g = world.clean

    def jobs() -> int:
        rows = world.gk.database.fetch(
            "SELECT COUNT(*) AS n FROM jobs WHERE repository = 'team/app' AND digest = :d",
            {"d": g.digest},
        )
        return int(rows[0]["n"])

    before = jobs()
    note = json.dumps({"note": "about someone else's image"}).encode()
    doc = artifact_doc("application/vnd.in-toto+json", note, g.manifest)
    with world.client(world.accounts.pusher) as pusher:
        for blob in (EMPTY_BLOB, note):
            push_blob(pusher, "other/x", blob)
        artifact = pushed(pusher, "other/x", "note", doc, OCI_MANIFEST)
    assert state_of(world.gk, "other/x", artifact) == "passed"  # its subject is not here
    time.sleep(0.5)
    assert jobs() == before


def test_a_release_lets_the_image_and_its_layers_out_until_it_expires(world: World) -> None:
    with world.client(world.accounts.pusher) as pusher:
        image = push_image(pusher, "team/released", "v1", [leaking_layer()])
    assert state_of(world.gk, "team/released", image.digest) == "quarantined"
    leak = f"/v2/team/released/blobs/{digest_of(image.layers[0])}"
    # A short release first; a longer one where the machine was too slow to read within it.
    for lasts in (4.0, 12.0, 30.0):
        with world.client(ADMIN) as admin:
            asked = time.monotonic()
            released = admin.post(
                f"/admin/api/v1/images/team/released@{image.digest}/release",
                json={"reason": "rotated key, accepted", "expires_in_seconds": lasts},
            )
            assert released.status_code == 200, released.text
        with world.client(world.accounts.reader) as reader:
            manifest = reader.get("/v2/team/released/manifests/v1", headers=HEADERS)
            blob = reader.get(leak)
        if time.monotonic() - asked < lasts:
            break
    else:
        raise AssertionError("too slow to tell the release from its expiry")
    assert manifest.status_code == 200 and blob.content == image.layers[0]
    with world.client(world.accounts.reader) as reader:
        time.sleep(max(0.0, asked + lasts - time.monotonic()))
        # The release has expired; the sweeper (every second) re-decides within a few seconds.
        wait_until(
            lambda: (
                reader.get("/v2/team/released/manifests/v1", headers=HEADERS).status_code == 403
            ),
            15,
            "the release to expire",
        )
        denied(reader.get("/v2/team/released/manifests/v1", headers=HEADERS))
        blob = reader.get(leak)
        denied(blob)
        no_layer_bytes(blob, image.layers[0])


# -- fresh uploads and digests the repository does not hold (issue 13) ------------------------


def test_a_fresh_upload_is_read_back_by_a_pusher_only(world: World, registry: Registry) -> None:
    """crane and conformance tools read a blob back before pushing its manifest. Only what was
    uploaded through the gatekeeper is fresh: a blob that reached the registry around it is
    unverified content."""
    fresh, _ = clean_layer()
    path = f"/v2/team/fresh/blobs/{digest_of(fresh)}"
    with world.client(world.accounts.pusher) as pusher:
        push_blob(pusher, "team/fresh", fresh)
        back = pusher.get(path)
        assert back.status_code == 200 and back.content == fresh
        ranged = pusher.get(path, headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 206 and ranged.content == fresh[:100]
    row = last_row(world.gk, "pia", path)
    assert row["decision"] in ("allow", "allow:sendfile") and "read-back" in row["reason"]
    with world.client(world.accounts.reader) as reader:
        refused = reader.get(path)
        assert "not part of any verified image" in denied(refused)
        no_layer_bytes(refused, fresh)
        head = reader.head(path)
        assert head.status_code == 403 and head.headers.get("Content-Length") != str(len(fresh))
    denied_row(world, path)
    around, _ = clean_layer()
    with httpx.Client(base_url=registry.url, timeout=60) as direct:
        push_blob(direct, "team/fresh", around)
    with world.client(world.accounts.pusher) as pusher:
        refused = pusher.get(f"/v2/team/fresh/blobs/{digest_of(around)}")
        assert "uploaded into it through the gatekeeper" in denied(refused)
        no_layer_bytes(refused, around)


def test_read_back_never_returns_a_quarantined_or_held_layer(world: World) -> None:
    """The pusher of a quarantined image uploads its layer again into a fresh repository, as a
    blob no manifest lists, and asks for it back."""
    leak = digest_of(world.leak)
    with world.client(world.accounts.pusher) as pusher:
        push_blob(pusher, "team/readback", world.leak)
        refused = pusher.get(f"/v2/team/readback/blobs/{leak}")
        message = denied(refused)
        assert "part of an image that is quarantined" in message, message
        no_layer_bytes(refused, world.leak)
        held = push_image(pusher, "team/rb-held", "v1", [clean_layer()])
    assert state_of(world.gk, "team/rb-held", held.digest) == "passed"
    with world.client(ADMIN) as admin:
        url = f"/admin/api/v1/images/team/rb-held@{held.digest}/requarantine"
        assert admin.post(url, json={"reason": "hold for read-back"}).status_code == 200
    layer = held.layers[0]
    with world.client(world.accounts.pusher) as pusher:
        push_blob(pusher, "team/rb-held-copy", layer)
        refused = pusher.get(f"/v2/team/rb-held-copy/blobs/{digest_of(layer)}")
        assert "held in quarantine" in denied(refused)
        no_layer_bytes(refused, layer)
    last = last_row(world.gk, "pia", f"/v2/team/rb-held-copy/blobs/{digest_of(layer)}")
    assert last["decision"] == "deny"


def test_a_digest_the_repository_does_not_hold_is_blob_unknown(world: World) -> None:
    """404, as the registry says it, to an identity that may pull: and it tells nothing about
    the quarantined layer that other repository holds."""
    missing = "sha256:" + "0" * 64
    leak = digest_of(world.leak)
    with world.client(world.accounts.reader) as reader:
        for path in (f"/v2/team/app/blobs/{missing}", f"/v2/team/nothing-here/blobs/{leak}"):
            resp = reader.get(path)
            assert resp.status_code == 404, resp.text
            (error,) = resp.json()["errors"]
            assert error["code"] == "BLOB_UNKNOWN"
            assert "quarantine" not in resp.text and "secret" not in resp.text
            row = last_row(world.gk, "rob", path)
            assert (row["status"], row["error_code"], row["decision"]) == (
                404,
                "BLOB_UNKNOWN",
                "deny",
            )
            assert reader.head(path).status_code == 404
        # The repository that holds it still says why it may not leave.
        message = denied(reader.get(f"/v2/team/app/blobs/{leak}"))
        assert "secret.aws-access-key" in message or "not part of any verified image" in message
    # A mount from a repository that does not hold it is a plain upload, as with the registry.
    with world.client(world.accounts.pusher) as pusher:
        plain = pusher.post(f"/v2/team/mount-none/blobs/uploads/?mount={leak}&from=team/empty")
        assert plain.status_code == 202, plain.text
        assert "quarantine" not in plain.text
    row = last_row(world.gk, "pia", "/v2/team/mount-none/blobs/uploads/")
    assert row["action"] == "upload.start" and "not in repository team/empty" in row["reason"]
