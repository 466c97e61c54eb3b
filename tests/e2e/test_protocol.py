"""The Distribution protocol through the gatekeeper to the real registry, endpoint by endpoint,
with every request checked against its access-log row."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx
import pytest

from tests.support.audited import Recorder, assert_one_row_each, audited_client
from tests.support.gatekeeper import Gatekeeper
from tests.support.ocihttp import (
    OCI_EMPTY,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    push_blob,
    push_image,
)
from tests.support.registry import Registry

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(gatekeeper: Gatekeeper) -> Iterator[tuple[httpx.Client, Recorder]]:
    client, recorder = audited_client(gatekeeper)
    with client:
        yield client, recorder


def test_version_check(client: tuple[httpx.Client, Recorder], gatekeeper: Gatekeeper) -> None:
    http, recorder = client
    resp = http.get("/v2/")
    assert resp.status_code == 200
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    (row,) = assert_one_row_each(gatekeeper, recorder)
    assert row["action"] == "api.version"
    assert row["identity"] == "anonymous"


def test_chunked_upload_with_two_patches(
    client: tuple[httpx.Client, Recorder], gatekeeper: Gatekeeper, registry: Registry
) -> None:
    http, recorder = client
    first, second = os.urandom(300_000), os.urandom(200_001)
    digest = digest_of(first + second)
    start = http.post("/v2/chunked/blobs/uploads/")
    assert start.status_code == 202
    location = start.headers["Location"]
    assert location.startswith(gatekeeper.url), "upload URL must point at the gatekeeper"
    assert registry.url not in location
    p1 = http.patch(
        location,
        content=first,
        headers={"Content-Type": "application/octet-stream", "Content-Range": "0-299999"},
    )
    assert p1.status_code == 202, p1.text
    assert p1.headers["Range"] == "0-299999"
    status = http.get(p1.headers["Location"])
    assert status.status_code == 204
    assert status.headers["Range"] == "0-299999"
    p2 = http.patch(
        p1.headers["Location"],
        content=second,
        headers={"Content-Type": "application/octet-stream", "Content-Range": "300000-500000"},
    )
    assert p2.status_code == 202, p2.text
    loc = p2.headers["Location"]
    done = http.put(f"{loc}{'&' if '?' in loc else '?'}digest={digest}")
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
    blob = http.get(f"/v2/chunked/blobs/{digest}")
    assert blob.content == first + second

    rows = assert_one_row_each(gatekeeper, recorder)
    assert [r["action"] for r in rows] == [
        "upload.start",
        "upload.chunk",
        "upload.status",
        "upload.chunk",
        "blob.push",
        "blob.pull",
    ]
    assert all(r["repository"] == "chunked" for r in rows)
    assert rows[4]["digest"] == digest and rows[5]["digest"] == digest


def test_cancel_upload(client: tuple[httpx.Client, Recorder], gatekeeper: Gatekeeper) -> None:
    http, recorder = client
    start = http.post("/v2/cancelled/blobs/uploads/")
    gone = http.delete(start.headers["Location"])
    assert gone.status_code == 204
    again = http.get(start.headers["Location"])
    assert again.status_code == 404
    assert again.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    rows = assert_one_row_each(gatekeeper, recorder)
    assert [r["action"] for r in rows] == ["upload.start", "upload.cancel", "upload.status"]


def test_cross_repository_mount(
    client: tuple[httpx.Client, Recorder], gatekeeper: Gatekeeper
) -> None:
    http, recorder = client
    data = os.urandom(50_000)
    digest = push_blob(http, "mount/source", data)
    resp = http.post(f"/v2/mount/target/blobs/uploads/?mount={digest}&from=mount/source")
    assert resp.status_code == 201, resp.text
    assert resp.headers["Location"].startswith(gatekeeper.url)
    assert http.get(f"/v2/mount/target/blobs/{digest}").content == data
    rows = assert_one_row_each(gatekeeper, recorder)
    mount = rows[2]
    assert (mount["action"], mount["repository"], mount["digest"]) == (
        "upload.mount",
        "mount/target",
        digest,
    )


def test_range_get(client: tuple[httpx.Client, Recorder], gatekeeper: Gatekeeper) -> None:
    http, recorder = client
    data = os.urandom(100_000)
    digest = push_blob(http, "ranged", data)
    part = http.get(f"/v2/ranged/blobs/{digest}", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == data[1000:2000]
    assert part.headers["Content-Range"] == "bytes 1000-1999/100000"
    head = http.head(f"/v2/ranged/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "100000"
    assert head.headers["Docker-Content-Digest"] == digest
    rows = assert_one_row_each(gatekeeper, recorder)
    assert rows[2]["action"] == "blob.pull" and rows[2]["bytes_out"] == 1000
    assert rows[3]["action"] == "blob.head"


def test_tag_listing_with_pagination(
    client: tuple[httpx.Client, Recorder], gatekeeper: Gatekeeper
) -> None:
    http, recorder = client
    layer = os.urandom(1000)
    tags = ["v1", "v2", "v3", "v4", "v5"]
    for tag in tags:
        push_image(http, "paged", tag, [layer])
    recorder.exchanges.clear()
    seen: list[str] = []
    url: str | None = "/v2/paged/tags/list?n=2"
    pages = 0
    while url:
        resp = http.get(url)
        assert resp.status_code == 200
        body = resp.json()
        assert body["name"] == "paged"
        seen.extend(body["tags"])
        pages += 1
        link = resp.headers.get("Link")
        if link:
            assert link.startswith(f"<{gatekeeper.url}/v2/paged/tags/list?")
            assert link.endswith('>; rel="next"')
            url = link[1 : link.index(">")]
        else:
            url = None
    assert seen == tags
    assert pages == 3
    assert http.get("/v2/paged/tags/list?last=v3").json()["tags"] == ["v4", "v5"]
    bad = http.get("/v2/paged/tags/list?n=-1")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == "PAGINATION_NUMBER_INVALID"
    rows = assert_one_row_each(gatekeeper, recorder)
    assert {r["action"] for r in rows} == {"tags.list"}


def test_catalog_pagination(client: tuple[httpx.Client, Recorder], gatekeeper: Gatekeeper) -> None:
    http, recorder = client
    for name in ("cat/a", "cat/b", "cat/c"):
        push_image(http, name, "latest", [os.urandom(100)])
    recorder.exchanges.clear()
    first = http.get("/v2/_catalog?n=1")
    assert first.status_code == 200
    assert len(first.json()["repositories"]) == 1
    link = first.headers["Link"]
    assert link.startswith(f"<{gatekeeper.url}/v2/_catalog?")
    everything = http.get("/v2/_catalog?n=1000").json()["repositories"]
    assert {"cat/a", "cat/b", "cat/c"} <= set(everything)
    rows = assert_one_row_each(gatekeeper, recorder)
    assert {r["action"] for r in rows} == {"catalog.list"}


def test_manifest_pull_push_delete(
    client: tuple[httpx.Client, Recorder], gatekeeper: Gatekeeper
) -> None:
    http, recorder = client
    layer = os.urandom(2000)
    digest, manifest = push_image(http, "lifecycle", "v1", [layer])
    by_tag = http.get("/v2/lifecycle/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert by_tag.status_code == 200
    assert by_tag.content == manifest
    assert by_tag.headers["Docker-Content-Digest"] == digest
    assert by_tag.headers["Content-Type"] == OCI_MANIFEST
    # skopeo and podman send one Accept header per media type; all of them must reach the
    # upstream, or it hides OCI manifests from the client.
    multi = http.get(
        "/v2/lifecycle/manifests/v1",
        headers=[
            ("Accept", OCI_MANIFEST),
            ("Accept", "application/vnd.docker.distribution.manifest.v2+json"),
        ],
    )
    assert multi.status_code == 200, multi.text
    assert multi.content == manifest
    head = http.head(f"/v2/lifecycle/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(manifest))
    layer_digest = digest_of(layer)
    assert http.delete(f"/v2/lifecycle/manifests/{digest}").status_code == 202
    gone = http.get(f"/v2/lifecycle/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
    assert gone.status_code == 404
    assert gone.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert http.delete(f"/v2/lifecycle/blobs/{layer_digest}").status_code == 202
    assert http.head(f"/v2/lifecycle/blobs/{layer_digest}").status_code == 404

    rows = assert_one_row_each(gatekeeper, recorder)
    named = [(r["action"], r["digest"]) for r in rows[-8:]]
    assert named == [
        ("manifest.push", digest),
        ("manifest.pull", digest),
        ("manifest.pull", digest),
        ("manifest.head", digest),
        ("manifest.delete", digest),
        ("manifest.pull", digest),
        ("blob.delete", layer_digest),
        ("blob.head", layer_digest),
    ]
    push_row = rows[-8]
    assert push_row["bytes_in"] == len(manifest)
    assert push_row["reference"] == "v1"


def test_referrers_for_an_artifact_with_a_subject(
    client: tuple[httpx.Client, Recorder], gatekeeper: Gatekeeper
) -> None:
    http, recorder = client
    subject_digest, subject_manifest = push_image(http, "refs", "app", [os.urandom(500)])
    empty = b"{}"
    push_blob(http, "refs", empty)
    sbom = json.dumps({"bomFormat": "CycloneDX"}).encode()
    push_blob(http, "refs", sbom)
    artifact = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom.v1+json",
            "config": descriptor(OCI_EMPTY, empty),
            "layers": [descriptor("application/vnd.cyclonedx+json", sbom)],
            "subject": descriptor(OCI_MANIFEST, subject_manifest),
            "annotations": {"org.example.kind": "sbom"},
        }
    ).encode()
    artifact_digest = digest_of(artifact)
    put = http.put(
        f"/v2/refs/manifests/{artifact_digest}",
        content=artifact,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201, put.text
    assert put.headers["OCI-Subject"] == subject_digest

    listing = http.get(f"/v2/refs/referrers/{subject_digest}")
    assert listing.status_code == 200
    assert listing.headers["Content-Type"].startswith("application/vnd.oci.image.index.v1+json")
    (entry,) = listing.json()["manifests"]
    assert entry == {
        "mediaType": OCI_MANIFEST,
        "digest": artifact_digest,
        "size": len(artifact),
        "artifactType": "application/vnd.example.sbom.v1+json",
        "annotations": {"org.example.kind": "sbom"},
    }
    filtered = http.get(
        f"/v2/refs/referrers/{subject_digest}?artifactType=application/vnd.example.sig"
    )
    assert filtered.json()["manifests"] == []
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    matching = http.get(
        f"/v2/refs/referrers/{subject_digest}?artifactType=application/vnd.example.sbom.v1%2Bjson"
    )
    assert [m["digest"] for m in matching.json()["manifests"]] == [artifact_digest]
    # Another repository's referrers never leak across.
    assert http.get(f"/v2/other/referrers/{subject_digest}").json()["manifests"] == []

    rows = assert_one_row_each(gatekeeper, recorder)
    assert rows[-4]["action"] == "referrers.list"
    assert rows[-4]["digest"] == subject_digest
