"""What a manifest is, decided from its content and history, never from the labels a client
wrote.

Media types, ``artifactType`` and ``subject`` are strings the pusher chose. Had they decided
which checks run, a quarantined layer relabelled ``text/spdx`` under a new manifest would pass
unchecked. So a manifest is verified as an image unless it *proves* to be an artifact:

1. An index is an index (its children are verified on their own, and it is pullable only
   while they are).
2. A manifest whose media types say "image" (an image config type, no ``artifactType``) is an
   image.
3. A manifest whose labels say "artifact" is still an image when its content is one: a layer
   that is a tar, gzip, zstd, xz or bzip2 stream, a config that is an image config (it names an
   ``os`` or ``architecture``), or a blob that carries findings of its own from an earlier
   verification (its history follows it).
4. Otherwise it is an artifact, which passes without image verification only when its type is
   one the policy lists (``artifact_types``: signatures, attestations, SBOMs, VEX by default);
   any other type is refused, with a reason that says which.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oci import boundedjson

CONTENT = "content"
"""The built-in outcome every verification starts with: what the manifest is, and what of its
content or its dependencies blocks it (``content.*`` findings, always critical)."""
IMAGE_CONFIG_TYPES = frozenset(
    {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
)
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SNIFF_BYTES = 512
"""Bytes read from the start of a blob to tell an archive from anything else (one tar header)."""
MAX_CONFIG_BYTES = 4 * 1024 * 1024
"""Largest config read (and parsed) by the verification service."""


class Kind(enum.StrEnum):
    """What verification treats a manifest as (stored as ``manifests.content_kind``)."""

    IMAGE = "image"
    INDEX = "index"
    ARTIFACT = "artifact"
    """A document about an image, of a type the policy lets through unverified."""
    REFUSED = "refused"
    """Claims to be an artifact of a type the policy does not list, and holds no image."""


@dataclass(frozen=True)
class Classification:
    kind: Kind
    artifact_type: str | None
    """The type the manifest declares, if it declares itself an artifact."""
    why: str
    """One sentence for the verdict: why it is treated this way."""


_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)


def sniff(head: bytes) -> str | None:
    """The archive format ``head`` (a blob's first bytes) starts, or None."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if _tar_header(head):
        return "tar"
    return None


def _tar_header(head: bytes) -> bool:
    """A valid tar header: the ``ustar`` magic, or (old v7 archives) a correct checksum."""
    if len(head) < 512:
        return False
    block = head[:512]
    if block[257:262] == b"ustar":
        return True
    field = block[148:156].replace(b"\x00", b" ").strip()
    if not field or any(c not in b"01234567" for c in field):
        return False
    expected = int(field, 8)
    actual = sum(block[:148]) + 8 * ord(" ") + sum(block[156:])
    return expected == actual and any(block[:100])


def declared_artifact_type(
    artifact_type: str | None, config_media_type: str | None, layer_media_types: Sequence[str]
) -> str | None:
    """The artifact type a manifest's labels claim, or None if they say "image": the
    ``artifactType``; else a config type that is not an image config's (and not the empty
    config); else, under an image config type or the empty config, the one media type all its
    layers share when that is not an image layer's (cosign's ``.sig`` and ``.att`` manifests)."""
    if artifact_type:
        return artifact_type
    if config_media_type and config_media_type not in IMAGE_CONFIG_TYPES | {EMPTY_CONFIG}:
        return config_media_type
    kinds = set(layer_media_types)
    if len(kinds) == 1:
        (only,) = kinds
        if not _image_layer_type(only):
            return only
    if config_media_type == EMPTY_CONFIG:
        return EMPTY_CONFIG
    return None


def _image_layer_type(media_type: str) -> bool:
    return media_type.startswith(
        ("application/vnd.oci.image.layer.", "application/vnd.docker.image.rootfs.")
    )


def is_image_config(doc: Any) -> bool:
    """Whether a parsed config describes a runnable image: it names an ``os`` or an
    ``architecture`` (cosign's signature manifests carry a config with both empty)."""
    return isinstance(doc, dict) and any(
        isinstance(doc.get(key), str) and doc.get(key) for key in ("os", "architecture")
    )


def parse_config(data: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """A config blob as an object, or why it cannot be one (None data: over the size limit)."""
    if data is None:
        return None, f"it is larger than {MAX_CONFIG_BYTES} bytes"
    try:
        doc = boundedjson.loads(data)
    except boundedjson.JSONTooDeep as exc:
        return None, f"it is {exc}"
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"it is not JSON ({exc.__class__.__name__})"
    if not isinstance(doc, dict):
        return None, f"it is a JSON {type(doc).__name__}, not an object"
    return doc, None


def classify(
    *,
    is_index: bool,
    declared: str | None,
    archives: Mapping[str, str],
    image_config: bool,
    seen: Collection[str],
    allowed: Collection[str],
    policy: str,
    in_images: Mapping[str, str] | None = None,
) -> Classification:
    """Classify one manifest. ``declared``: :func:`declared_artifact_type`; ``archives``: the
    blobs found to be archives (digest -> format); ``image_config``: the config is one;
    ``seen``: its blobs with image history; ``allowed``: the policy's ``artifact_types``."""
    if is_index:
        return Classification(Kind.INDEX, None, "an index: each platform image is verified")
    if declared is None:
        return Classification(Kind.IMAGE, None, "an image by its media types")
    evidence = _image_evidence(archives, image_config, seen, in_images or {})
    if evidence:
        return Classification(
            Kind.IMAGE,
            declared,
            f"declared as {declared}, but {evidence}: verified as an image",
        )
    if declared in allowed:
        return Classification(
            Kind.ARTIFACT,
            declared,
            f"an artifact of type {declared}, which policy {policy} lets through unverified",
        )
    return Classification(
        Kind.REFUSED,
        declared,
        f"artifact type {declared} is not one policy {policy} lets through without image "
        "verification (its artifact_types), and it holds no image to verify",
    )


def _image_evidence(
    archives: Mapping[str, str],
    image_config: bool,
    seen: Collection[str],
    in_images: Mapping[str, str],
) -> str:
    if archives:
        digest, kind = sorted(archives.items())[0]
        return f"blob {digest} is a {kind} stream"
    if image_config:
        return "its config is an image config"
    if seen:
        return f"blob {sorted(seen)[0]} carries findings of its own from an earlier verification"
    if in_images:
        blob = sorted(in_images)[0]
        return f"blob {blob} is part of image {in_images[blob]} of this repository"
    return ""
