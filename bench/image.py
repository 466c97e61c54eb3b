"""The small OCI image whose manifest the benchmark requests: one config, one big layer.

The manifest is what clients fetch first on every pull, so its request rate and latency through a
proxy are the per-request cost of the gate; the layer it references is the blob whose throughput
is measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from bench.blobs import BlobFile

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class SmallImage:
    """Serialized config and manifest, ready to push byte for byte."""

    config: bytes
    """Image config JSON; its ``rootfs.diff_ids`` name the layer (uncompressed, so same digest)."""
    config_digest: str
    """``sha256:`` digest of ``config``."""
    manifest: bytes
    """OCI image manifest JSON referencing the config and the layer."""
    manifest_digest: str
    """``sha256:`` digest of ``manifest``; pulls by digest use it."""


def image_for(layer: BlobFile) -> SmallImage:
    """Build the single-layer image around ``layer``."""
    config = _canonical(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.digest]},
        }
    )
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": _descriptor(CONFIG_MEDIA_TYPE, _digest(config), len(config)),
            "layers": [_descriptor(LAYER_MEDIA_TYPE, layer.digest, layer.size)],
        }
    )
    return SmallImage(
        config=config,
        config_digest=_digest(config),
        manifest=manifest,
        manifest_digest=_digest(manifest),
    )


def _descriptor(media_type: str, digest: str, size: int) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def _canonical(document: dict[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
