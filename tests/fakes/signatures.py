"""An in-memory repository implementing the verifier's seams (blobs, other manifests, other
repositories), and helpers that put cosign signatures and bundles into it the way a push would."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from tests.support import cosign, notation
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, image_manifest
from verifiers.base import Descriptor, FetchedManifest, Image, RepositoryView

REGISTRY = "registry.example.test"


@dataclass
class FakeRegistry:
    """Repositories by name; opens any of them for a verifier (``RepositoryOpener``), and
    remembers which were opened."""

    repositories: dict[str, FakeRepository] = field(default_factory=dict)
    opened: list[str] = field(default_factory=list)

    def repository(self, name: str) -> FakeRepository:
        if name not in self.repositories:
            self.repositories[name] = FakeRepository(name, registry=self)
        return self.repositories[name]

    async def open(self, repository: str, subject: str) -> RepositoryView:
        self.opened.append(repository)
        return self.repository(repository).view(subject)


@dataclass
class FakeRepository:
    """Blobs by digest and manifests by tag or digest."""

    name: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    referrers: list[tuple[Descriptor, str | None]] = field(default_factory=list)
    subjects: dict[str, str] = field(default_factory=dict)
    """Referrer manifest digest -> the digest its ``subject`` names."""
    registry: FakeRegistry | None = field(default=None, repr=False, compare=False)
    """Where the images of this repository may open other repositories."""

    @contextlib.asynccontextmanager
    async def open(self, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        data = self.blobs[digest]

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 4096):
                yield data[start : start + 4096]

        yield chunks()

    async def fetch(self, reference: str) -> FetchedManifest | None:
        body = self.manifests.get(reference)
        return None if body is None else FetchedManifest(digest_of(body), OCI_MANIFEST, body)

    def add_image(self) -> str:
        layer = os.urandom(64)
        config = image_config(layers=1)
        manifest = image_manifest(config, [layer])
        self.blobs[digest_of(config)] = config
        self.blobs[digest_of(layer)] = layer
        digest = digest_of(manifest)
        self.manifests[digest] = manifest
        return digest

    def sign(self, digest: str, *layers: cosign.SigLayer) -> None:
        config, manifest = cosign.signature_manifest(list(layers))
        self.blobs[digest_of(config)] = config
        for layer in layers:
            self.blobs[digest_of(layer.payload)] = layer.payload
        self.manifests[cosign.signature_tag(digest)] = manifest

    def attach_bundle(self, digest: str, bundle: bytes) -> None:
        self.blobs[digest_of(bundle)] = bundle
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": cosign.BUNDLE_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": digest_of(b"{}"),
                    "size": 2,
                },
                "layers": [
                    {
                        "mediaType": cosign.BUNDLE_TYPE,
                        "digest": digest_of(bundle),
                        "size": len(bundle),
                    }
                ],
                "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1},
            }
        ).encode()
        self.manifests[digest_of(manifest)] = manifest
        self.subjects[digest_of(manifest)] = digest
        self.referrers.append(
            (Descriptor(OCI_MANIFEST, digest_of(manifest), len(manifest)), cosign.BUNDLE_TYPE)
        )

    def attach_notation(self, digest: str, envelope: bytes, media_type: str) -> str:
        """Attach a Notation signature as a referrer, as ``notation sign`` pushes it."""
        size = len(self.manifests[digest]) if digest in self.manifests else 0
        manifest = notation.signature_manifest(digest, size, envelope, media_type)
        self.blobs[digest_of(envelope)] = envelope
        self.manifests[digest_of(manifest)] = manifest
        self.subjects[digest_of(manifest)] = digest
        self.referrers.append(
            (Descriptor(OCI_MANIFEST, digest_of(manifest), len(manifest)), notation.ARTIFACT_TYPE)
        )
        return digest_of(manifest)

    def view(self, subject: str) -> RepositoryView:
        """This repository as another one's image sees it: only the referrers of ``subject``."""
        about = [(d, t) for d, t in self.referrers if self.subjects.get(d.digest) == subject]
        return RepositoryView(
            name=self.name,
            manifests=self,
            blobs=self,
            referrers=tuple(d for d, _ in about),
            referrer_types=tuple(t for _, t in about),
        )

    def image(self, digest: str) -> Image:
        body = self.manifests[digest]
        doc: dict[str, Any] = json.loads(body)
        image = Image(
            repository=self.name,
            digest=digest,
            media_type=doc["mediaType"],
            manifest=doc,
            config=None,
            layers=tuple(
                Descriptor(layer["mediaType"], layer["digest"], layer["size"])
                for layer in doc.get("layers", [])
            ),
            children=(),
            blobs=self,
            referrers=tuple(d for d, _ in self.referrers),
            referrer_types=tuple(t for _, t in self.referrers),
            manifests=self,
        )
        return image if self.registry is None else replace(image, repositories=self.registry)

    def reference(self) -> str:
        return f"{REGISTRY}/{self.name}"
