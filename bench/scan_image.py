"""A realistic image for the scan benchmark, built from this machine's own files.

Real package databases and real file mixes, not synthetic ones: the dpkg status file and
``/etc/os-release``, the system's Python ``dist-packages`` and global ``node_modules`` in one
layer, the project's virtualenv ``site-packages`` (hundreds of ``dist-info`` directories and
tens of thousands of files) in another, and Debian's Go toolchain binaries (embedded build info)
in a third. Layers are gzip-compressed tars, written as an OCI image layout directory so syft
can read exactly the same image offline (``oci-dir:``).

Only what exists is taken: a missing directory is left out and said so, and the layer list in
the report shows what the image held.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, cast

from zlib_ng import zlib_ng

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DESCRIPTION = "bench-image.json"
"""Beside the layout: what was built, so ``--keep-image`` can reuse it without rebuilding."""
GZIP_LEVEL = 6
"""gzip's default level, as ``docker build`` and most image builders write layers."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer: (directory or file on this machine, path inside the image) pairs."""

    name: str
    members: tuple[tuple[Path, str], ...]


def default_layers() -> tuple[LayerSpec, ...]:
    """The three layers described in the module docstring, from this machine."""
    venv = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    go = sorted(Path("/usr/lib").glob("go-1.*"))
    return (
        LayerSpec(
            "os",
            (
                (Path("/etc/os-release"), "etc/os-release"),
                (Path("/usr/lib/os-release"), "usr/lib/os-release"),
                (Path("/var/lib/dpkg/status"), "var/lib/dpkg/status"),
                (Path("/usr/lib/python3/dist-packages"), "usr/lib/python3/dist-packages"),
                (Path("/usr/lib/node_modules"), "usr/lib/node_modules"),
            ),
        ),
        LayerSpec(
            "python-venv",
            ((venv / "site-packages", "usr/local/lib/python3.11/site-packages"),),
        ),
        LayerSpec(
            "go-binaries",
            tuple(
                (go[-1] / sub, f"usr/lib/{go[-1].name}/{sub}")
                for sub in ("bin", "pkg/tool/linux_amd64")
            )
            if go
            else (),
        ),
    )


@dataclass(frozen=True)
class BuiltLayer:
    name: str
    digest: str
    """``sha256:`` of the compressed blob."""
    diff_id: str
    """``sha256:`` of the tar, as the image config lists it."""
    compressed_bytes: int
    uncompressed_bytes: int
    path: Path
    """The blob file in the layout."""


@dataclass(frozen=True)
class BuiltImage:
    layout: Path
    """OCI image layout directory (``oci-dir:`` for syft)."""
    layers: tuple[BuiltLayer, ...]
    skipped: tuple[str, ...]
    """Sources that do not exist on this machine."""

    @property
    def compressed_bytes(self) -> int:
        return sum(layer.compressed_bytes for layer in self.layers)

    @property
    def uncompressed_bytes(self) -> int:
        return sum(layer.uncompressed_bytes for layer in self.layers)


def load_or_build(layout: Path) -> BuiltImage:
    """The image kept in ``layout`` by an earlier run, else a new one built there."""
    saved = layout / DESCRIPTION
    if saved.exists():
        data = json.loads(saved.read_text())
        layers = tuple(
            BuiltLayer(**{**layer, "path": Path(layer["path"])}) for layer in data["layers"]
        )
        return BuiltImage(layout=layout, layers=layers, skipped=tuple(data["skipped"]))
    return build_image(layout)


def build_image(layout: Path, specs: Iterable[LayerSpec] | None = None) -> BuiltImage:
    """Write the layers and an OCI layout (index, manifest, config) under ``layout``."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    built, skipped = [], []
    for spec in specs if specs is not None else default_layers():
        present = [(src, dst) for src, dst in spec.members if src.exists()]
        skipped += [str(src) for src, _ in spec.members if not src.exists()]
        if present:
            built.append(_write_layer(blobs, spec.name, present))
    config = _put(
        blobs,
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in built]},
            }
        ).encode(),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **config},
        "layers": [
            {"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.compressed_bytes}
            for layer in built
        ],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, **_put(blobs, json.dumps(manifest).encode())}],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    image = BuiltImage(layout=layout, layers=tuple(built), skipped=tuple(skipped))
    description = {
        "layers": [{**asdict(layer), "path": str(layer.path)} for layer in built],
        "skipped": skipped,
    }
    (layout / DESCRIPTION).write_text(json.dumps(description))
    return image


def _write_layer(blobs: Path, name: str, members: list[tuple[Path, str]]) -> BuiltLayer:
    scratch = blobs / f".{name}.tmp"
    with scratch.open("wb") as raw:
        writer = _GzipWriter(raw)
        with tarfile.open(
            fileobj=cast(IO[bytes], writer), mode="w|", format=tarfile.PAX_FORMAT
        ) as tar:
            for source, target in members:
                tar.add(source, arcname=target, filter=_regular_only)
        writer.close()
    digest = f"sha256:{writer.compressed_hash.hexdigest()}"
    path = blobs / digest.removeprefix("sha256:")
    scratch.rename(path)
    return BuiltLayer(
        name=name,
        digest=digest,
        diff_id=f"sha256:{writer.tar_hash.hexdigest()}",
        compressed_bytes=writer.compressed_size,
        uncompressed_bytes=writer.tar_size,
        path=path,
    )


def _regular_only(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Files, directories and symlinks; sockets and devices of a live system are left out."""
    return info if info.isfile() or info.isdir() or info.issym() else None


def _put(blobs: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


class _GzipWriter:
    """Gzip what is written (zlib-ng, gzip container) into ``raw``, hashing both sides: the
    compressed digest names the blob, the tar's digest is the config's ``diff_id``."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.compressor = zlib_ng.compressobj(GZIP_LEVEL, zlib_ng.DEFLATED, 31)
        self.tar_hash, self.compressed_hash = hashlib.sha256(), hashlib.sha256()
        self.tar_size = self.compressed_size = 0

    def write(self, data: bytes) -> int:
        self.tar_hash.update(data)
        self.tar_size += len(data)
        self._out(self.compressor.compress(data))
        return len(data)

    def close(self) -> None:
        self._out(self.compressor.flush())

    def _out(self, data: bytes) -> None:
        self.compressed_hash.update(data)
        self.compressed_size += len(data)
        self.raw.write(data)
