"""The strict manifest parser that decides what gets indexed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from oci.errors import OCIError
from oci.manifests import DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, parse_manifest, sha256_digest

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def desc(digest: str, media_type: str = "application/octet-stream", **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": 10, **extra}


def test_image_manifest_with_subject() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc(D1, "application/vnd.oci.empty.v1+json"),
        "layers": [desc(D2)],
        "subject": desc(D2, OCI_MANIFEST),
        "annotations": {"a": "b"},
    }
    body = json.dumps(doc).encode()
    record = parse_manifest("r", body, OCI_MANIFEST)
    assert record.digest == sha256_digest(body)
    assert record.config_digest == D1
    assert record.subject_digest == D2
    assert record.artifact_type == "application/vnd.oci.empty.v1+json"
    assert [r.kind for r in record.refs] == ["config", "layer"]


def test_index_children_keep_their_platform() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            desc(
                D1,
                OCI_MANIFEST,
                platform={
                    "os": "linux",
                    "architecture": "arm64",
                    "variant": "v8",
                    "os.features": ["x"],
                },
            ),
        ],
    }
    record = parse_manifest("r", json.dumps(doc).encode(), None)
    assert record.media_type == DOCKER_LIST
    (child,) = record.refs
    assert child.platform == {"os": "linux", "architecture": "arm64", "variant": "v8"}


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        ({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}, OCI_MANIFEST),
        (
            {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc("md5:x"), "layers": []},
            OCI_MANIFEST,
        ),
        ({"schemaVersion": 2, "config": desc(D1) | {"size": -1}, "layers": []}, OCI_MANIFEST),
        ({"schemaVersion": 2, "config": desc(D1) | {"size": True}, "layers": []}, OCI_MANIFEST),
        ({"schemaVersion": 2, "config": desc(D1), "layers": {}}, OCI_MANIFEST),
        (
            {"schemaVersion": 2, "config": desc(D1), "layers": [], "annotations": {"a": 1}},
            OCI_MANIFEST,
        ),
        ({"schemaVersion": 2, "manifests": [desc(D1)] * 10_001}, OCI_INDEX),
        ({"schemaVersion": 2, "manifests": []}, "text/plain"),
    ],
    ids=[
        "type-mismatch",
        "bad-digest",
        "negative-size",
        "bool-size",
        "layers-not-list",
        "bad-annotations",
        "too-many",
        "unknown-type",
    ],
)
def test_malformed(doc: dict[str, Any], content_type: str) -> None:
    with pytest.raises(OCIError) as exc:
        parse_manifest("r", json.dumps(doc).encode(), content_type)
    assert exc.value.code.code == "MANIFEST_INVALID"


@pytest.mark.parametrize(
    "doc",
    [
        {"schemaVersion": 2, "config": desc(D1, "application/x\u0000y"), "layers": []},
        {"schemaVersion": 2, "config": desc(D1), "layers": [desc(D2, "text/plain; charset=x")]},
        {"schemaVersion": 2, "config": desc(D1), "layers": [], "artifactType": "a\u0000/b"},
        {"schemaVersion": 2, "config": desc(D1), "layers": [], "artifactType": ""},
        {"schemaVersion": 2, "config": desc(D1), "layers": [], "artifactType": "no-subtype"},
        {"schemaVersion": 2, "config": desc(D1), "layers": [], "subject": desc(D2, "a/b\nc")},
    ],
    ids=[
        "config-nul",
        "layer-parameters",
        "artifact-nul",
        "artifact-empty",
        "artifact-bare",
        "subject-newline",
    ],
)
def test_media_types_must_follow_rfc_6838(doc: dict[str, Any]) -> None:
    """The image spec requires it; a NUL in one reached PostgreSQL, which cannot store it, and
    the push ended in 503 after the registry had stored the manifest."""
    with pytest.raises(OCIError) as exc:
        parse_manifest("r", json.dumps(doc).encode(), OCI_MANIFEST)
    assert exc.value.code.code == "MANIFEST_INVALID"
    assert "(RFC 6838)" in exc.value.message


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
        "application/vnd.dev.cosign.simplesigning.v1+json",
        "text/spdx",
        "application/x-mpegURL",
    ],
)
def test_real_media_types_are_accepted(media_type: str) -> None:
    doc = {"schemaVersion": 2, "config": desc(D1), "layers": [desc(D2, media_type)]}
    doc["artifactType"] = media_type
    record = parse_manifest("r", json.dumps(doc).encode(), OCI_MANIFEST)
    assert record.artifact_type == media_type and record.refs[1].media_type == media_type


def test_a_manifest_nested_deeper_than_the_limit_is_refused() -> None:
    """An unknown field is ignored, but not parsed into a structure of any depth (it used to be
    accepted up to Python's recursion limit and its values could reach the database)."""
    nested: Any = "x"
    for _ in range(100):
        nested = [nested]
    doc = {"schemaVersion": 2, "config": desc(D1), "layers": [], "x-extra": nested}
    with pytest.raises(OCIError) as exc:
        parse_manifest("r", json.dumps(doc).encode(), OCI_MANIFEST)
    assert exc.value.code.code == "MANIFEST_INVALID"
    assert "nested deeper than 64 levels" in exc.value.message


@pytest.mark.parametrize(
    ("doc", "content_type", "key"),
    [
        (
            {"schemaVersion": 2, "config": desc(D1), "layers": [desc(D2)] * 4},
            OCI_MANIFEST,
            "layers",
        ),
        ({"schemaVersion": 2, "manifests": [desc(D1)] * 4}, OCI_INDEX, "manifests"),
    ],
    ids=["layers", "index-children"],
)
def test_entries_over_the_setting_are_refused_naming_it(
    doc: dict[str, Any], content_type: str, key: str
) -> None:
    body = json.dumps(doc).encode()
    assert len(parse_manifest("r", body, content_type, max_descriptors=4).refs) >= 4
    with pytest.raises(OCIError) as exc:
        parse_manifest("r", body, content_type, max_descriptors=3)
    assert exc.value.code.code == "MANIFEST_INVALID"
    assert exc.value.message == (
        f"manifest invalid: {key} lists 4 entries, more than the 3 this registry accepts "
        "(setting max_manifest_layers)"
    )
    assert exc.value.detail == {"reason": exc.value.message[18:], "entries": 4, "limit": 3}
