"""What the registry's mounted storage is believed to say (``proxy.registry_files``): a tag's
link only when it is exactly a sha256 digest, a manifest only when its repository links it and
its bytes hash to it, no link or manifest through a symbolic link, and a storage in proxy mode
told apart. Each refusal is None, which sends the request to the registry."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from proxy import registry_files

NAME = "team/app"
V2 = "docker/registry/v2"
BODY = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"})
DIGEST = "sha256:" + hashlib.sha256(BODY.encode()).hexdigest()


def tag_link(root: Path, tag: str, name: str = NAME) -> Path:
    return root / V2 / "repositories" / name / "_manifests/tags" / tag / "current/link"


def revision_link(root: Path, digest: str, name: str = NAME) -> Path:
    algorithm, _, encoded = digest.partition(":")
    return root / V2 / "repositories" / name / "_manifests/revisions" / algorithm / encoded / "link"


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A storage as the registry leaves it after ``PUT /v2/team/app/manifests/v1``."""
    write(registry_files.blob_data_path(tmp_path, DIGEST), BODY.encode())
    write(revision_link(tmp_path, DIGEST), DIGEST.encode())
    write(tag_link(tmp_path, "v1"), DIGEST.encode())
    return tmp_path


def test_a_tag_resolves_to_the_digest_its_link_holds(root: Path) -> None:
    assert registry_files.tagged(root, NAME, "v1") == DIGEST
    assert registry_files.manifest(root, NAME, DIGEST, 4096) == BODY.encode()


def test_a_tag_moved_resolves_to_its_new_digest(root: Path) -> None:
    other = "sha256:" + "b" * 64
    write(tag_link(root, "v1"), other.encode())
    assert registry_files.tagged(root, NAME, "v1") == other


@pytest.mark.parametrize(
    "content",
    [
        b"",  # truncated by the registry, not yet written again
        DIGEST.encode()[:40],  # half written
        DIGEST.encode() + b"\n",
        b" " + DIGEST.encode(),
        DIGEST.upper().encode(),
        b"sha512:" + b"a" * 128,
        b"sha256:" + b"a" * 63,
        DIGEST.encode() + b"a",
        b"sha256:" + b"a" * 64 + b"\x00" + b"b" * 10,
    ],
)
def test_a_link_that_is_not_exactly_a_sha256_digest_is_not_believed(
    root: Path, content: bytes
) -> None:
    write(tag_link(root, "v1"), content)
    assert registry_files.tagged(root, NAME, "v1") is None


def test_a_tag_missing_or_of_another_repository_is_none(root: Path) -> None:
    assert registry_files.tagged(root, NAME, "v2") is None
    assert registry_files.tagged(root, "team/other", "v1") is None


def test_a_deleted_manifest_is_not_served_though_a_tag_still_names_it(root: Path) -> None:
    """The tag read, then the manifest deleted before its revision link is read: the bytes are
    still on disk (until garbage collection) but the repository no longer holds them."""
    assert registry_files.tagged(root, NAME, "v1") == DIGEST
    revision_link(root, DIGEST).unlink()
    assert registry_files.manifest(root, NAME, DIGEST, 4096) is None


def test_a_tag_pointing_at_a_manifest_of_another_repository_is_not_served(root: Path) -> None:
    """A tampered link naming bytes this repository does not link: not served from here."""
    write(tag_link(root, "v1", "team/other"), DIGEST.encode())
    assert registry_files.tagged(root, "team/other", "v1") == DIGEST
    assert registry_files.manifest(root, "team/other", DIGEST, 4096) is None


def test_bytes_that_do_not_hash_to_the_digest_are_not_served(root: Path) -> None:
    write(registry_files.blob_data_path(root, DIGEST), BODY.encode() + b" ")
    assert registry_files.manifest(root, NAME, DIGEST, 4096) is None


def test_a_manifest_over_the_limit_is_not_served(root: Path) -> None:
    assert registry_files.manifest(root, NAME, DIGEST, len(BODY) - 1) is None


def test_symbolic_links_are_not_followed(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The registry never makes one; one planted in its storage is not believed, whether it
    stands for a tag link, a revision link or a manifest's bytes."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    planted = elsewhere / "link"
    planted.write_bytes(DIGEST.encode())
    tag = tag_link(root, "v1")
    tag.unlink()
    os.symlink(planted, tag)
    assert registry_files.tagged(root, NAME, "v1") is None

    revision = revision_link(root, DIGEST)
    revision.unlink()
    os.symlink(planted, revision)
    assert registry_files.manifest(root, NAME, DIGEST, 4096) is None

    write(revision, DIGEST.encode())
    data = registry_files.blob_data_path(root, DIGEST)
    copy = elsewhere / "data"
    copy.write_bytes(data.read_bytes())
    data.unlink()
    os.symlink(copy, data)
    assert registry_files.manifest(root, NAME, DIGEST, 4096) is None


def test_a_storage_in_proxy_mode_is_told_apart(root: Path) -> None:
    assert not registry_files.pulls_through(root)
    (root / "scheduler-state.json").write_text("{}")
    assert registry_files.pulls_through(root)
