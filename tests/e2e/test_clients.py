"""Real clients through the gatekeeper: skopeo and podman push and pull real images.

What a user does with the gatekeeper must work exactly as against the registry itself: images
round-trip byte for byte (same manifest digest, same layer digests), a 50 MB layer streams
both ways, and an image index keeps its digest. On top, every request each client sent must
appear exactly once in the access log with the action and repository the spec's route gives
it (see :mod:`tests.support.accesslog`), plus the details an operator relies on: the digest
pushed, the bytes served.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.support.accesslog import AuditedRun, Row, audited
from tests.support.clients import Podman, Skopeo
from tests.support.gatekeeper import Gatekeeper
from tests.support.images import (
    Descriptor,
    Image,
    OciLayout,
    Platform,
    build_image,
    build_index,
    sha256_file,
)

pytestmark = pytest.mark.e2e

BIG_LAYER_BYTES = 50 * 1024 * 1024
"""The layer that proves streaming: larger than any buffer a proxy might get away with."""
SKOPEO_REPO = "e2e/skopeo"
PODMAN_REPO = "e2e/podman"
INDEX_REPO = "e2e/multiarch"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> OciLayout:
    return OciLayout(tmp_path_factory.mktemp("layout"))


@pytest.fixture(scope="module")
def big_image(layout: OciLayout) -> Image:
    """A three-layer image whose top layer is the 50 MB one (top, because podman's ``vfs``
    storage copies every lower layer into each layer above it)."""
    return build_image(layout, "big", [256 * 1024, 4 * 1024, BIG_LAYER_BYTES])


@pytest.fixture(scope="module")
def skopeo(gatekeeper: Gatekeeper, tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("skopeo"), [gatekeeper.host])


@pytest.fixture
def new_podman(gatekeeper: Gatekeeper, tmp_path: Path) -> Iterator[Callable[[str], Podman]]:
    """Make podman "machines" (separate storages) for one test, and clean up after it."""
    made: list[Podman] = []

    def make(name: str) -> Podman:
        made.append(Podman(tmp_path / name, [gatekeeper.host]))
        return made[-1]

    yield make
    for podman in made:
        podman.close()


@pytest.fixture(scope="module")
def big_push(
    gatekeeper: Gatekeeper, skopeo: Skopeo, layout: OciLayout, big_image: Image
) -> AuditedRun:
    """The big image pushed once with skopeo; every pull test starts from this upload."""
    dest = f"docker://{gatekeeper.host}/{SKOPEO_REPO}:v1"
    return audited(gatekeeper, lambda: skopeo.copy(f"oci:{layout.root}:big", dest))


def test_skopeo_push_logs_each_upload_once(big_push: AuditedRun, big_image: Image) -> None:
    assert max(layer.descriptor.size for layer in big_image.layers) >= 50_000_000
    big_push.assert_one_row_per_request()

    [manifest_row] = big_push.rows_for("manifest.push", SKOPEO_REPO)
    assert (manifest_row["reference"], manifest_row["digest"], manifest_row["status"]) == (
        "v1",
        big_image.manifest.digest,
        201,
    )
    pushed = big_push.rows_for("blob.push", SKOPEO_REPO)
    assert sorted(row["digest"] for row in pushed) == sorted(b.digest for b in big_image.blobs)
    assert {row["status"] for row in pushed} == {201}
    sizes = {blob.digest: blob.size for blob in big_image.blobs}
    for row in pushed:
        chunks = [r for r in big_push.rows_for("upload.chunk") if _same_upload(r, row)]
        assert sum(r["bytes_in"] for r in chunks) == sizes[row["digest"]], row


def test_skopeo_round_trip_is_byte_identical(
    gatekeeper: Gatekeeper,
    skopeo: Skopeo,
    layout: OciLayout,
    big_image: Image,
    big_push: AuditedRun,
    tmp_path: Path,
) -> None:
    source = f"docker://{gatekeeper.host}/{SKOPEO_REPO}:v1"
    raw = audited(gatekeeper, lambda: skopeo.inspect_raw(source))
    assert raw.run.stdout == layout.blob_path(big_image.manifest.digest).read_bytes()
    raw.assert_one_row_per_request()

    back = OciLayout(tmp_path / "back")
    pull = audited(gatekeeper, lambda: skopeo.copy(source, f"oci:{back.root}:v1"))
    pull.assert_one_row_per_request()

    index = json.loads((back.root / "index.json").read_bytes())
    assert [entry["digest"] for entry in index["manifests"]] == [big_image.manifest.digest]
    for blob in (big_image.manifest, *big_image.blobs):
        path = back.blob_path(blob.digest)
        assert (sha256_file(path), path.stat().st_size) == (blob.digest, blob.size)

    for run in (raw, pull):
        [manifest_row] = run.rows_for("manifest.pull", SKOPEO_REPO)
        assert (manifest_row["reference"], manifest_row["digest"]) == (
            "v1",
            big_image.manifest.digest,
        )
    _assert_blobs_served(pull.rows_for("blob.pull", SKOPEO_REPO), big_image.blobs)


def test_podman_pull_push_pull_keeps_digests(
    gatekeeper: Gatekeeper,
    big_image: Image,
    big_push: AuditedRun,
    new_podman: Callable[[str], Podman],
) -> None:
    host = gatekeeper.host
    first = new_podman("first")
    pull = audited(gatekeeper, lambda: first.pull(f"{host}/{SKOPEO_REPO}:v1"))
    pull.assert_one_row_per_request()
    assert first.image_digest(f"{host}/{SKOPEO_REPO}:v1") == big_image.manifest.digest
    _assert_blobs_served(pull.rows_for("blob.pull", SKOPEO_REPO), big_image.blobs)

    push = audited(
        gatekeeper, lambda: first.push(f"{host}/{SKOPEO_REPO}:v1", f"{host}/{PODMAN_REPO}:v1")
    )
    push.assert_one_row_per_request()
    # podman's blob-info cache (as root: /var/lib/containers/cache) remembers that its layers
    # came from SKOPEO_REPO as these gzip blobs, so it mounts them across repositories instead
    # of recompressing: the manifest, and so its digest, is unchanged.
    assert push.run.digest == big_image.manifest.digest
    [manifest_row] = push.rows_for("manifest.push", PODMAN_REPO)
    assert (manifest_row["digest"], manifest_row["status"]) == (push.run.digest, 201)
    mounts = push.rows_for("upload.mount", PODMAN_REPO)
    assert sorted(row["digest"] for row in mounts) == sorted(
        layer.descriptor.digest for layer in big_image.layers
    )
    assert {row["status"] for row in mounts} == {201}

    second = new_podman("second")
    pull_back = audited(gatekeeper, lambda: second.pull(f"{host}/{PODMAN_REPO}:v1"))
    pull_back.assert_one_row_per_request()
    assert second.image_digest(f"{host}/{PODMAN_REPO}:v1") == push.run.digest
    _assert_blobs_served(pull_back.rows_for("blob.pull", PODMAN_REPO), big_image.blobs)


def test_index_with_two_platforms_keeps_its_digest(
    gatekeeper: Gatekeeper,
    skopeo: Skopeo,
    layout: OciLayout,
    new_podman: Callable[[str], Podman],
) -> None:
    index = build_index(layout, "multiarch", [Platform("amd64"), Platform("arm64")])
    ref = f"{gatekeeper.host}/{INDEX_REPO}"
    push = audited(
        gatekeeper,
        lambda: skopeo.copy(f"oci:{layout.root}:multiarch", f"docker://{ref}:v1", all_images=True),
    )
    push.assert_one_row_per_request()
    manifest_rows = push.rows_for("manifest.push", INDEX_REPO)
    expected = [index.index.digest, *(image.manifest.digest for image in index.images)]
    assert Counter(row["digest"] for row in manifest_rows) == Counter(expected)
    [index_row] = [row for row in manifest_rows if row["digest"] == index.index.digest]
    assert index_row["reference"] == "v1"
    uploaded = sorted(row["digest"] for row in push.rows_for("blob.push", INDEX_REPO))
    assert uploaded == sorted(blob.digest for image in index.images for blob in image.blobs)

    raw = audited(gatekeeper, lambda: skopeo.inspect_raw(f"docker://{ref}:v1"))
    raw.assert_one_row_per_request()
    assert _sha256(raw.run.stdout) == index.index.digest

    podman = new_podman("podman")
    for image in index.images:
        by_digest = f"{ref}@{image.manifest.digest}"
        pull = audited(gatekeeper, partial(podman.pull, by_digest))
        pull.assert_one_row_per_request()
        assert podman.image_digest(by_digest) == image.manifest.digest, image.platform
        [manifest_row] = pull.rows_for("manifest.pull", INDEX_REPO)
        assert manifest_row["reference"] == manifest_row["digest"] == image.manifest.digest
        _assert_blobs_served(pull.rows_for("blob.pull", INDEX_REPO), image.blobs)


def _assert_blobs_served(rows: list[Row], blobs: Iterable[Descriptor]) -> None:
    """Each blob was fetched once, completely: ``bytes_out`` is the blob's size."""
    served = sorted((row["digest"], row["bytes_out"], row["status"]) for row in rows)
    assert served == sorted((blob.digest, blob.size, 200) for blob in blobs)


def _same_upload(chunk: Row, closing: Row) -> bool:
    """Whether a PATCH row belongs to the upload session that ``closing`` (its PUT) finished."""
    return bool(chunk["path"].split("?")[0] == closing["path"].split("?")[0])


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
