"""Small image layers built in memory for the scanning end-to-end tests: a gzip'd tar from a
callback, the image config listing the layers' diff IDs, and the same image as an OCI image
layout directory that syft reads."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from tests.support.ocihttp import OCI_MANIFEST


def layer(build: Any) -> tuple[bytes, str]:
    """A gzip'd layer from a callback that adds members to a tar, and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    plain = raw.getvalue()
    return gzip.compress(plain, 1, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


def config_for(layers: list[tuple[bytes, str]]) -> bytes:
    """A minimal image config: the scan needs ``rootfs`` to list the ``layers``' diff IDs."""
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
        }
    ).encode()


def oci_layout(target: Path, layers: list[tuple[bytes, str]]) -> None:
    """The same image as an OCI image layout directory, for syft."""
    blobs = target / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes, media_type: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": put(config_for(layers), "application/vnd.oci.image.config.v1+json"),
        "layers": [put(d, "application/vnd.oci.image.layer.v1.tar+gzip") for d, _ in layers],
    }
    index = {"schemaVersion": 2, "manifests": [put(json.dumps(manifest).encode(), OCI_MANIFEST)]}
    (target / "index.json").write_text(json.dumps(index))
    (target / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
