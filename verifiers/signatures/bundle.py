"""Sigstore bundles: what they are called and what a verified one proves.

The verification itself is in :mod:`verifiers.signatures.bundle_check`, imported on the first
bundle: it needs ``sigstore``, whose import (with its TUF, AWS and Azure signer modules) costs
about a second of CPU, which every server start and every CLI command paid before any bundle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from verifiers.signatures.errors import StepFailed
from verifiers.signatures.keys import PublicKey
from verifiers.signatures.trust import TrustRoot

BUNDLE_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
    }
)
INTOTO = "application/vnd.in-toto+json"


@dataclass(frozen=True)
class Artifact:
    """What the bundle must be about: its SHA-256 (for an image, the manifest digest)."""

    sha256: bytes

    @classmethod
    def of(cls, data: bytes) -> Artifact:
        return cls(hashlib.sha256(data).digest())

    @classmethod
    def image(cls, digest: str) -> Artifact:
        algorithm, _, hexpart = digest.partition(":")
        if algorithm != "sha256":
            raise StepFailed("signature.bundle-invalid", f"cannot match a {algorithm} digest")
        return cls(bytes.fromhex(hexpart))


@dataclass(frozen=True)
class VerifiedBundle:
    """What a bundle that verified proves."""

    certificate: x509.Certificate | None
    """The signing certificate (keyless); its identity is still to be matched."""
    key: PublicKey | None
    """The trusted key that verified it (managed key)."""
    statement: dict[str, Any] | None
    """The in-toto statement of a DSSE bundle; None for a message signature."""
    logged: bool = True
    """False for a key bundle made offline (no transparency-log entry, none required)."""


def verify_bundle(
    raw: bytes,
    artifact: Artifact,
    trust: TrustRoot,
    keys: Sequence[PublicKey] = (),
    *,
    require_tlog: bool = True,
) -> VerifiedBundle:
    """Verify a bundle over ``artifact`` (:func:`verifiers.signatures.bundle_check.verify_bundle`
    says how and what it raises)."""
    from verifiers.signatures import bundle_check

    return bundle_check.verify_bundle(raw, artifact, trust, keys, require_tlog=require_tlog)
