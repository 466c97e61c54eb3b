"""Manifest media types, what a manifest says (:class:`ManifestRecord`, the record the
gatekeeper's index stores) and a strict parser from manifest bytes to it.

The parser is deliberately strict: whatever the gatekeeper indexes (and later verifies) must be
exactly what the upstream stores, so a manifest we cannot understand is refused before it is
forwarded, rather than stored and served unverified.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from oci import boundedjson
from oci.boundedjson import JSONTooDeep
from oci.errors import Code, OCIError
from oci.grammar import is_media_type, is_valid_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = IMAGE_MANIFESTS | INDEXES
IMAGE_CONFIGS = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
MAX_DESCRIPTORS = 10_000
"""Hard ceiling on layers (or index children) whatever the settings say; the setting
``max_manifest_layers`` (at most this) is the limit actually applied."""


@dataclass(frozen=True)
class DescriptorRecord:
    """One descriptor inside a manifest."""

    kind: str
    """``config``, ``layer`` or ``manifest`` (a child of an index)."""
    digest: str
    media_type: str
    size: int
    platform: dict[str, Any] | None = None
    """``os``/``architecture``/``variant`` of an index child, as the index declares it."""


@dataclass(frozen=True)
class ManifestRecord:
    """What the index stores about one manifest."""

    repository: str
    digest: str
    media_type: str
    size: int
    artifact_type: str | None = None
    """The manifest's ``artifactType``, or for an image manifest its config media type."""
    config_digest: str | None = None
    subject_digest: str | None = None
    annotations: dict[str, Any] | None = None
    refs: tuple[DescriptorRecord, ...] = field(default_factory=tuple)
    about_digest: str | None = None
    """The image it is about when that is not its ``subject`` (a cosign tag it was pushed
    under); the index stores ``subject_digest`` when this is None."""


def sha256_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _invalid(message: str) -> OCIError:
    return OCIError(Code.MANIFEST_INVALID, f"manifest invalid: {message}", {"reason": message})


def _descriptor(value: Any, kind: str, where: str) -> DescriptorRecord:
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a descriptor object")
    digest, media_type, size = value.get("digest"), value.get("mediaType"), value.get("size")
    if not isinstance(digest, str) or not is_valid_digest(digest):
        raise _invalid(f"{where}.digest is missing or malformed")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType is missing")
    if not is_media_type(media_type):
        raise _invalid(f"{where}.mediaType {media_type!r} is not a media type (RFC 6838)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    platform = value.get("platform")
    if platform is not None and not isinstance(platform, dict):
        raise _invalid(f"{where}.platform must be an object")
    kept = None
    if platform:
        kept = {k: platform[k] for k in ("os", "architecture", "variant") if k in platform}
    return DescriptorRecord(
        kind=kind, digest=digest, media_type=media_type, size=size, platform=kept
    )


def _descriptor_list(
    doc: dict[str, Any], key: str, kind: str, limit: int
) -> list[DescriptorRecord]:
    values = doc.get(key)
    if not isinstance(values, list):
        raise _invalid(f"{key} must be a list")
    if len(values) > limit:
        message = (
            f"{key} lists {len(values)} entries, more than the {limit} this registry accepts "
            "(setting max_manifest_layers)"
        )
        raise OCIError(
            Code.MANIFEST_INVALID,
            f"manifest invalid: {message}",
            {"reason": message, "entries": len(values), "limit": limit},
        )
    return [_descriptor(value, kind, f"{key}[{i}]") for i, value in enumerate(values)]


def _document(body: bytes) -> dict[str, Any]:
    """The manifest's JSON object, of schema version 2."""
    try:
        doc = boundedjson.loads(body)
    except JSONTooDeep as exc:
        raise _invalid(f"not accepted JSON: {exc}") from exc
    except ValueError as exc:
        raise _invalid(f"not valid JSON ({exc.__class__.__name__})") from exc
    if not isinstance(doc, dict):
        raise _invalid("top level must be a JSON object")
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2 (schema 1 manifests are not accepted)")
    return doc


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    """The request's Content-Type, which ``mediaType`` (when present) must agree with."""
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    media_type = (content_type or "").split(";")[0].strip() or declared
    if declared is not None and declared != media_type:
        raise _invalid(f"mediaType {declared!r} does not match Content-Type {media_type!r}")
    if media_type not in MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type!r}")
    return media_type


def parse_manifest(
    repository: str,
    body: bytes,
    content_type: str | None,
    digest: str | None = None,
    *,
    max_descriptors: int = MAX_DESCRIPTORS,
) -> ManifestRecord:
    """Parse a manifest as pushed; ``content_type`` is the request's Content-Type.
    ``max_descriptors`` caps its layers (an index's children): the ``max_manifest_layers``
    setting, since every entry is indexed and verified."""
    limit = min(max_descriptors, MAX_DESCRIPTORS)
    doc = _document(body)
    media_type = _media_type(doc, content_type)
    refs: list[DescriptorRecord] = []
    config_digest = None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    if artifact_type is not None and not is_media_type(artifact_type):
        raise _invalid(f"artifactType {artifact_type!r} is not a media type (RFC 6838)")
    if media_type in IMAGE_MANIFESTS:
        config = _descriptor(doc.get("config"), "config", "config")
        config_digest = config.digest
        refs.append(config)
        refs.extend(_descriptor_list(doc, "layers", "layer", limit))
        if artifact_type is None:
            # distribution-spec (referrers): fall back to the config's media type.
            artifact_type = config.media_type
    else:
        refs.extend(_descriptor_list(doc, "manifests", "manifest", limit))
    subject = doc.get("subject")
    subject_digest = _descriptor(subject, "subject", "subject").digest if subject else None
    annotations = doc.get("annotations")
    if annotations is not None and (
        not isinstance(annotations, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())
    ):
        raise _invalid("annotations must map strings to strings")
    return ManifestRecord(
        repository=repository,
        digest=digest or sha256_digest(body),
        media_type=media_type,
        size=len(body),
        artifact_type=artifact_type,
        config_digest=config_digest,
        subject_digest=subject_digest,
        annotations=annotations,
        refs=tuple(refs),
    )
