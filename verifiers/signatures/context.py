"""What every signature check needs to know about the image and the trust that applies, and
the one way signature material is read (bounded, digest-checked)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from verifiers.base import BlobOpener, Descriptor
from verifiers.registry_names import RegistryNames
from verifiers.signatures.errors import StepFailed
from verifiers.signatures.notation.revocation import Crls
from verifiers.signatures.notation.trustpolicy import NotationTrust
from verifiers.signatures.policy import Rule
from verifiers.signatures.steps import Checked
from verifiers.signatures.trust import TrustRoot


@dataclass(frozen=True)
class Context:
    """One image under one rule."""

    repository: str
    digest: str
    rule: Rule
    trust: TrustRoot
    blobs: BlobOpener
    """Blobs of the repository the signatures are stored in (the image's, or the rule's
    signature repository)."""
    max_payload_bytes: int
    now: datetime
    registry: RegistryNames
    """The names of this registry: a cosign payload's ``docker-reference`` must use one."""
    image_media_type: str = ""
    image_size: int | None = None
    """The manifest's size, which a Notation payload names; None when it could not be read."""
    notation: NotationTrust | None = None
    crls: Crls | None = None


class Candidate(Protocol):
    """A signature found for the image (a cosign layer, a Sigstore bundle); checks itself."""

    @property
    def source(self) -> str: ...

    async def check(self, ctx: Context) -> Checked: ...


async def read_limited(ctx: Context, layer: Descriptor, what: str) -> bytes:
    """The blob's bytes, refusing more than the limit (declared or actual) and bytes that do not
    hash to the descriptor's digest."""
    limit = ctx.max_payload_bytes
    if layer.size > limit:
        raise StepFailed(
            "signature.payload-too-large",
            f"the {what} is {layer.size} bytes; the limit is {limit} (max_payload_bytes)",
        )
    parts: list[bytes] = []
    size = 0
    hasher = hashlib.sha256()
    async with ctx.blobs.open(layer.digest) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise StepFailed(
                    "signature.payload-too-large",
                    f"the {what} is larger than its descriptor says and than the limit of {limit}",
                )
            hasher.update(chunk)
            parts.append(chunk)
    actual = "sha256:" + hasher.hexdigest()
    if actual != layer.digest or size != layer.size:
        raise StepFailed(
            "signature.payload-blob-mismatch",
            f"the {what} read hashes to {actual} ({size} bytes), but its descriptor says "
            f"{layer.digest} ({layer.size} bytes): altered in storage",
        )
    return b"".join(parts)
