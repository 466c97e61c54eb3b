"""Speak the Distribution protocol with httpx: push blobs and manifests the way clients do."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    """Monolithic upload: POST for a session, PUT with the body and its digest."""
    digest = digest_of(data)
    start = client.post(f"/v2/{repo}/blobs/uploads/")
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    sep = "&" if "?" in location else "?"
    done = client.put(
        f"{location}{sep}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    return digest


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def image_manifest(config: bytes, layers: list[bytes], **extra: Any) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer) for layer in layers],
        **extra,
    }
    return json.dumps(doc).encode()


def push_image(
    client: httpx.Client, repo: str, tag: str, layers: list[bytes], config: bytes | None = None
) -> tuple[str, bytes]:
    """Push blobs and a manifest; returns (manifest digest, manifest bytes)."""
    config = config or image_config(layers=len(layers))
    push_blob(client, repo, config)
    for layer in layers:
        push_blob(client, repo, layer)
    manifest = image_manifest(config, layers)
    resp = client.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    assert resp.status_code == 201, resp.text
    return resp.headers["Docker-Content-Digest"], manifest


def image_config(labels: dict[str, str] | None = None, layers: int = 1) -> bytes:
    """A config that passes config-sanity for ``layers`` layers, with optional labels."""
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": labels or {}},
            "rootfs": {
                "type": "layers",
                "diff_ids": [f"sha256:{n:064x}" for n in range(layers)],
            },
        }
    ).encode()
