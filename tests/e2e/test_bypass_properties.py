"""Properties of the gate, through the real registry: whatever a pusher writes around them, a
quarantined layer and a layer with a newly planted secret (readable, or at a path too long for
the scanner to read) never reach a pull-only identity.

Hypothesis draws manifests and indexes (OCI and Docker formats, any media types, an
``artifactType``, a ``subject``, annotations, configs that are real, empty, foreign or
unreadable, indexes nested twice) that list such a layer among others; each is pushed by the
pusher, verified by the real gatekeeper, and pulled by the reader.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.bypass import (
    ACCEPT,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY,
    EMPTY_BLOB,
    HIDDEN,
    OCI_INDEX,
    Accounts,
    Image,
    bypass_gatekeeper,
    clean_layer,
    config_of,
    descriptor,
    leaking_layer,
    make_accounts,
    push_image,
    put_manifest,
    state_of,
)
from tests.support.gatekeeper import Gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, digest_of, push_blob
from tests.support.registry import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = "team/prop"
LAYER_TYPES = [
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "text/spdx",
    "application/spdx+json",
    "application/vnd.dev.cosign.simplesigning.v1+json",
    "application/vnd.dsse.envelope.v1+json",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/octet-stream",
    "application/x-anything",
]
CONFIG_TYPES = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
    EMPTY,
    "application/octet-stream",
    "application/x-anything",
    "application/vnd.cncf.helm.config.v1+json",
]
ARTIFACT_TYPES = [
    None,
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/spdx+json",
    "application/vnd.in-toto+json",
    "application/vnd.openvex+json",
    "application/x-anything",
]
_TAGS = itertools.count()


@dataclass(frozen=True)
class World:
    gk: Gatekeeper
    accounts: Accounts
    quarantined: Image
    clean: Image
    configs: dict[str, bytes]
    """Configs a manifest may list: the quarantined image's, ``{}``, foreign JSON, unreadable."""


@pytest.fixture(scope="module")
def world(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with bypass_gatekeeper(tmp_path_factory.mktemp("properties"), registry.url) as gk:
        accounts = make_accounts(gk)
        base = clean_layer("usr/lib/base.txt")
        with httpx.Client(base_url=gk.url, headers=accounts.pusher, timeout=60) as http:
            quarantined = push_image(http, REPO, "q", [base, leaking_layer()])
            clean = push_image(http, REPO, "g", [base, clean_layer()])
            configs = {
                "quarantined": quarantined.config,
                "empty": EMPTY_BLOB,
                "foreign": json.dumps({"name": "chart", "version": "1.0.0"}).encode(),
                "array": json.dumps([{"os": "linux"}]).encode(),
                "not-json": b"\x00\x01\x02 not json at all",
            }
            for blob in configs.values():
                push_blob(http, REPO, blob)
        assert state_of(gk, REPO, quarantined.digest) == "quarantined"
        assert state_of(gk, REPO, clean.digest) == "passed"
        yield World(gk, accounts, quarantined, clean, configs)


@dataclass(frozen=True)
class Shape:
    """One manifest an attacker writes (an image manifest, or an index over such)."""

    docker: bool
    config: str
    config_type: str
    layers: tuple[tuple[str, str], ...]
    """(which layer, its media type): ``leak`` (the quarantined one), ``fresh`` (a new layer
    with a newly planted key), ``hidden`` (a new layer with a key at a path too long to read),
    ``base`` (the clean shared base)."""
    artifact_type: str | None
    subject: str | None
    """``clean``, ``quarantined``, ``nowhere``, or None."""
    annotate: bool
    nesting: int
    """0: the manifest itself; 1: an index over it; 2: an index over an index over it."""


shapes = st.builds(
    Shape,
    docker=st.booleans(),
    config=st.sampled_from(["quarantined", "empty", "foreign", "array", "not-json", "real"]),
    config_type=st.sampled_from(CONFIG_TYPES),
    layers=st.lists(
        st.tuples(
            st.sampled_from(["leak", "fresh", "hidden", "base"]), st.sampled_from(LAYER_TYPES)
        ),
        min_size=1,
        max_size=3,
    )
    .filter(lambda layers: any(which != "base" for which, _ in layers))
    .map(tuple),
    artifact_type=st.sampled_from(ARTIFACT_TYPES),
    subject=st.sampled_from([None, "clean", "quarantined", "nowhere"]),
    annotate=st.booleans(),
    nesting=st.sampled_from([0, 0, 1, 2]),
)


def build(
    world: World, shape: Shape, http: httpx.Client
) -> tuple[dict[str, Any], str, list[bytes]]:
    """Push the blobs of ``shape`` and return its manifest, media type, and the layers with a
    secret it lists."""
    layers: list[tuple[bytes, str]] = []
    secret: list[bytes] = []
    for which, media_type in shape.layers:
        if which == "leak":
            data = world.quarantined.layers[1]
        elif which == "fresh":
            data, _ = leaking_layer()
        elif which == "hidden":
            data, _ = leaking_layer(path=HIDDEN)
        else:
            data = world.quarantined.layers[0]
        push_blob(http, REPO, data)
        layers.append((data, media_type))
        if which != "base":
            secret.append(data)
    config = world.configs.get(shape.config) or config_of(["sha256:" + "1" * 64] * len(layers))
    push_blob(http, REPO, config)
    media_type = DOCKER_MANIFEST if shape.docker else OCI_MANIFEST
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(shape.config_type, config),
        "layers": [descriptor(t, data) for data, t in layers],
    }
    if shape.artifact_type and not shape.docker:
        doc["artifactType"] = shape.artifact_type
    if shape.subject is not None and not shape.docker:
        target = {"clean": world.clean.manifest, "quarantined": world.quarantined.manifest}
        if shape.subject == "nowhere":
            doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 7}
        else:
            doc["subject"] = descriptor(OCI_MANIFEST, json.dumps(target[shape.subject]).encode())
    if shape.annotate and not shape.docker:
        doc["annotations"] = {"org.example.innocent": "yes"}
    for _ in range(shape.nesting):
        body = json.dumps(doc).encode()
        tag = f"child-{next(_TAGS)}"
        assert put_manifest(http, REPO, tag, doc, media_type).status_code == 201
        index_type = DOCKER_LIST if shape.docker else OCI_INDEX
        doc = {
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": [
                descriptor(media_type, body, platform={"os": "linux", "architecture": "amd64"})
            ],
        }
        media_type = index_type
    return doc, media_type, secret


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(shape=shapes)
def test_a_secret_layer_never_reaches_a_pull_only_identity(world: World, shape: Shape) -> None:
    tag = f"p{next(_TAGS)}"
    with httpx.Client(base_url=world.gk.url, headers=world.accounts.pusher, timeout=60) as http:
        doc, media_type, secret = build(world, shape, http)
        pushed = put_manifest(http, REPO, tag, doc, media_type)
    if pushed.status_code != 201:
        # Refused at the push (a byte-for-byte copy of the quarantined manifest, say): the
        # registry holds nothing new to pull.
        assert pushed.status_code in (400, 403), pushed.text
        return
    digest = pushed.headers["Docker-Content-Digest"]
    state = state_of(world.gk, REPO, digest)
    assert state == "quarantined", (shape, state)
    with httpx.Client(base_url=world.gk.url, headers=world.accounts.reader, timeout=60) as reader:
        manifest = reader.get(f"/v2/{REPO}/manifests/{tag}", headers={"Accept": ACCEPT})
        assert manifest.status_code == 403, (shape, manifest.text)
        for data in secret:
            blob = reader.get(f"/v2/{REPO}/blobs/{digest_of(data)}")
            assert blob.status_code == 403, (shape, blob.status_code)
            assert data[:32] not in blob.content
