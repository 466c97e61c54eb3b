"""Starting inputs for each target, so the fuzzer begins from valid documents and archives
(the JSON and zlib decoders are C code the fuzzer cannot see into) and mutates from there."""

from __future__ import annotations

import io
import json
import tarfile

from oci.manifests import OCI_INDEX, OCI_MANIFEST

_D = "sha256:" + "a" * 64


def _descriptor(media_type: str, size: int = 2) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _D, "size": size}


def _manifests() -> list[bytes]:
    image = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor("application/vnd.oci.image.config.v1+json"),
        "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", 10)],
        "subject": _descriptor(OCI_MANIFEST),
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {**_descriptor(OCI_MANIFEST), "platform": {"os": "linux", "architecture": "amd64"}}
        ],
        "artifactType": "application/example",
    }
    # The first byte picks the Content-Type (see fuzz.targets.manifest).
    return [bytes([i]) + json.dumps(doc).encode() for i in (0, 3, 4) for doc in (image, index)]


def _tar(members: dict[str, bytes], fmt: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "../etc/passwd"
        tar.addfile(link)
    return out.getvalue()


def _layers() -> list[bytes]:
    members = {
        "etc/os-release": b"ID=alpine\n",
        "usr/lib/python3/site-packages/x-1.dist-info/METADATA": b"Name: x\nVersion: 1\n",
        "dir/" * 30 + "name": b"x" * 600,  # over 100 characters: ustar prefix, PAX, GNU L
        ".wh.gone": b"",
    }
    tars = [_tar(members, fmt) for fmt in (tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT)]
    tars.append(_tar(members, tarfile.GNU_FORMAT))
    # The first byte picks the wrapping: 0 raw, 1 gzip, 2 zstd (see fuzz.targets.layer).
    return [bytes([mode]) + tar for mode in (0, 1, 2) for tar in tars]


def _references() -> list[bytes]:
    return [
        b"library/ubuntu",
        b"a.b_c__d-e/f--g",
        b"v1.2.3-rc_1",
        _D.encode(),
        b"sha512:" + b"b" * 128,
        b"/v2/a/b/manifests/latest?n=1",
        b"/v2/a/%2e%2e/b",
    ]


SEEDS = {"manifest": _manifests, "layer": _layers, "reference": _references}
