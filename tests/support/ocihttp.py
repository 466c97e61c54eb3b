"""Speak the Distribution protocol with httpx: push blobs and manifests the way clients do."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from datetime import UTC, datetime
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


_BUILDS = itertools.count()


def created() -> str:
    """A build time no other config of this process has: real configs differ per build (their
    ``created`` time, their layers' diff_ids), and the gatekeeper judges content, so two test
    images must not share a config by accident (a hold on one would cover the other)."""
    moment = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{time.time_ns() % 10**9:09d}{next(_BUILDS)}Z"


def image_config(labels: dict[str, str] | None = None, layers: int = 1) -> bytes:
    """A config that passes config-sanity for ``layers`` layers, with optional labels."""
    return json.dumps(
        {
            "created": created(),
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": labels or {}},
            "rootfs": {
                "type": "layers",
                "diff_ids": [f"sha256:{n:064x}" for n in range(layers)],
            },
        }
    ).encode()


def tar_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A real gzip'd tar layer (small, in memory) and its diff_id, for clients that unpack."""
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            entry.mode = 0o644
            tar.addfile(entry, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, mtime=0), digest_of(plain)


def runnable_image(
    client: httpx.Client, repo: str, tag: str, files: dict[str, bytes]
) -> tuple[str, bytes]:
    """Push an image podman can unpack: a real layer and a config naming its diff_id."""
    layer, diff_id = tar_layer(files)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    return push_image(client, repo, tag, [layer], config)
