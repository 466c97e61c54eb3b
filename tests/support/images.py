"""Build real OCI images on disk, without a container engine, for the client end-to-end tests.

The tests need images that real clients (skopeo, podman) accept and that are big enough to
exercise streaming (one layer of 50 MB or more). We write an OCI image layout directory
(``oci-layout``, ``index.json``, ``blobs/sha256/...``) that ``skopeo copy oci:DIR:TAG ...``
reads directly, so no Docker engine or network is needed.

Layers are genuine gzip'd tar archives made with :mod:`tarfile`, written to disk as a stream
while their digests are computed, so a 50 MB layer never exists as one bytes object. Their
content comes from :func:`os.urandom`: it is incompressible (the blob is as big as asked) and
unique per build, so two images never share a blob by accident and a registry that outlives a
test run cannot hold them already.

JSON documents are serialized compactly with keys in the order Go's ``encoding/json`` writes
the image-spec structs, so a client that re-serializes a manifest it did not change (podman
pushing from its local storage) produces the same bytes and therefore the same digest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

_CHUNK = 1 << 20
"""Files are hashed in 1 MiB pieces."""
_TAR_FORMAT = tarfile.PAX_FORMAT
"""Python's default since 3.8, read by every OCI client; named so the choice is visible."""
_GZIP_LEVEL = 1
"""Random content does not compress at any level; the fastest level keeps layer builds short."""
_FIXED_MTIME = 1_700_000_000
"""Tar entries get one fixed time: only the random content makes a layer unique."""


@dataclass(frozen=True)
class Platform:
    """Where an image runs; written into its config and into the index entry pointing at it."""

    architecture: str
    """GOARCH spelling: ``amd64``, ``arm64``."""
    os: str = "linux"
    """GOOS spelling."""

    def to_json(self) -> dict[str, str]:
        return {"architecture": self.architecture, "os": self.os}


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a manifest or index says about a blob it references."""

    media_type: str
    """The blob's media type, as clients send it in ``Accept`` and ``Content-Type``."""
    digest: str
    """``sha256:<hex>`` of the blob's bytes as stored (for layers: the compressed bytes)."""
    size: int
    """Length in bytes of the blob as stored; the registry serves exactly this many."""
    platform: Platform | None = None
    """Only for manifests listed in an index."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            doc["platform"] = self.platform.to_json()
        return doc


@dataclass(frozen=True)
class Layer:
    """A gzip'd tar layer written to the layout."""

    descriptor: Descriptor
    """Digest and size of the compressed blob, as listed in the manifest."""
    diff_id: str
    """Digest of the uncompressed tar, as listed in the config's ``rootfs.diff_ids``."""


@dataclass(frozen=True)
class Image:
    """One single-platform image manifest, its config and its layers."""

    manifest: Descriptor
    """The manifest blob; its digest is what a registry returns as ``Docker-Content-Digest``."""
    config: Descriptor
    """The config blob, carrying ``architecture``/``os`` and the layers' diff IDs."""
    layers: tuple[Layer, ...]
    """In manifest order, base layer first."""
    platform: Platform
    """The platform the config declares."""

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Every blob the manifest references: config first, then layers."""
        return (self.config, *(layer.descriptor for layer in self.layers))


@dataclass(frozen=True)
class ImageIndex:
    """An image index (manifest list) over single-platform images."""

    index: Descriptor
    """The index blob; pushing it must preserve this digest."""
    images: tuple[Image, ...]
    """The images it lists, in index order."""


@dataclass(frozen=True)
class LayerFile:
    """One regular file inside a layer, filled with ``size`` random bytes."""

    name: str
    """Path inside the image's root filesystem, without a leading slash."""
    size: int
    """Length of the file's content."""


@dataclass
class OciLayout:
    """An OCI image layout directory that images, indexes and tags are added to.

    Blobs are content-addressed files; ``index.json`` is rewritten on each :meth:`tag` so the
    directory is always a valid layout that skopeo can read.
    """

    root: Path
    """The layout directory; created with its ``oci-layout`` marker if missing."""
    _tags: list[tuple[str, Descriptor]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}', encoding="utf-8")
        self._write_index()

    def blob_path(self, digest: str) -> Path:
        """Where a blob with ``digest`` lives inside the layout."""
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        """Store a small blob (a config, a manifest) and describe it."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blob_path(digest).write_bytes(data)
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    def add_layer(self, files: Sequence[LayerFile]) -> Layer:
        """Write a gzip'd tar layer holding ``files`` of random content, streamed to disk."""
        partial = self.root / "blobs" / "sha256" / f".partial-{os.urandom(8).hex()}"
        with partial.open("wb") as raw:
            compressed = _DigestingWriter(raw)
            gz = gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=_GZIP_LEVEL, mtime=0)
            with gz:
                uncompressed = _DigestingWriter(gz)
                _write_tar(uncompressed, files)
        digest = compressed.digest()
        partial.rename(self.blob_path(digest))
        descriptor = Descriptor(MEDIA_TYPE_LAYER_GZIP, digest, compressed.size)
        return Layer(descriptor=descriptor, diff_id=uncompressed.digest())

    def add_image(self, layers: Sequence[Layer], platform: Platform) -> Image:
        """Write the config and manifest for ``layers`` and return the resulting image."""
        config = self.add_blob(
            _go_json(
                {
                    "created": "2023-11-14T22:13:20Z",
                    "architecture": platform.architecture,
                    "os": platform.os,
                    "config": {"Env": ["PATH=/usr/bin:/bin"]},
                    "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
                }
            ),
            MEDIA_TYPE_CONFIG,
        )
        manifest = self.add_blob(
            _go_json(
                {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_TYPE_MANIFEST,
                    "config": config.to_json(),
                    "layers": [layer.descriptor.to_json() for layer in layers],
                }
            ),
            MEDIA_TYPE_MANIFEST,
        )
        return Image(manifest=manifest, config=config, layers=tuple(layers), platform=platform)

    def add_index(self, images: Sequence[Image]) -> ImageIndex:
        """Write an image index listing each image with its platform."""
        entries = [
            Descriptor(i.manifest.media_type, i.manifest.digest, i.manifest.size, i.platform)
            for i in images
        ]
        index = self.add_blob(
            _go_json(
                {
                    "schemaVersion": 2,
                    "mediaType": MEDIA_TYPE_INDEX,
                    "manifests": [entry.to_json() for entry in entries],
                }
            ),
            MEDIA_TYPE_INDEX,
        )
        return ImageIndex(index=index, images=tuple(images))

    def tag(self, descriptor: Descriptor, name: str) -> None:
        """Make ``descriptor`` reachable as ``oci:<root>:<name>``."""
        self._tags.append((name, descriptor))
        self._write_index()

    def _write_index(self) -> None:
        manifests = [
            {**descriptor.to_json(), "annotations": {REF_NAME_ANNOTATION: name}}
            for name, descriptor in self._tags
        ]
        document = {"schemaVersion": 2, "manifests": manifests}
        (self.root / "index.json").write_bytes(_go_json(document))


def build_image(
    layout: OciLayout,
    tag: str,
    layer_sizes: Sequence[int],
    platform: Platform | None = None,
) -> Image:
    """Add an image with one layer per entry of ``layer_sizes`` and tag it.

    Each layer holds one directory with one random file of (about) that size; the compressed
    blob is a few hundred bytes bigger than the file because random data does not compress.
    """
    layers = [
        layout.add_layer([LayerFile(f"layer{number}/data.bin", size)])
        for number, size in enumerate(layer_sizes)
    ]
    image = layout.add_image(layers, platform or Platform("amd64"))
    layout.tag(image.manifest, tag)
    return image


def build_index(
    layout: OciLayout,
    tag: str,
    platforms: Sequence[Platform],
    layer_size: int = 64 * 1024,
) -> ImageIndex:
    """Add an image index with one two-layer image per platform and tag the index."""
    images = [
        layout.add_image(
            [
                layout.add_layer([LayerFile(f"{platform.architecture}/base.bin", layer_size)]),
                layout.add_layer([LayerFile(f"{platform.architecture}/app.bin", layer_size)]),
            ],
            platform,
        )
        for platform in platforms
    ]
    index = layout.add_index(images)
    layout.tag(index.index, tag)
    return index


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file, read in chunks (blobs can be large)."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


class _DigestingWriter(io.BufferedIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``.

    It never flushes or closes ``target``: whoever opened ``target`` closes it.
    """

    def __init__(self, target: io.BufferedIOBase) -> None:
        super().__init__()
        self._target = target
        self._hasher = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        self._hasher.update(view)
        self._target.write(view)
        self.size += view.nbytes
        return view.nbytes

    def digest(self) -> str:
        return "sha256:" + self._hasher.hexdigest()


class _RandomReader:
    """A read-only file object yielding ``size`` random bytes, so tarfile can stream them."""

    def __init__(self, size: int) -> None:
        self._remaining = size

    def read(self, size: int = -1) -> bytes:
        data = os.urandom(self._remaining if size < 0 else min(size, self._remaining))
        self._remaining -= len(data)
        return data


def _write_tar(target: _DigestingWriter, files: Sequence[LayerFile]) -> None:
    """Stream a tar of ``files`` (stream mode ``w|``: no seeking, nothing held in memory)."""
    with tarfile.open(fileobj=target, mode="w|", format=_TAR_FORMAT) as tar:
        for entry in files:
            _add_random_file(tar, entry)


def _add_random_file(tar: tarfile.TarFile, entry: LayerFile) -> None:
    parent = os.path.dirname(entry.name)
    if parent:
        directory = tarfile.TarInfo(parent)
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        directory.mtime = _FIXED_MTIME
        tar.addfile(directory)
    info = tarfile.TarInfo(entry.name)
    info.size = entry.size
    info.mode = 0o644
    info.mtime = _FIXED_MTIME
    tar.addfile(info, _RandomReader(entry.size))


def _go_json(document: dict[str, Any]) -> bytes:
    """Serialize like Go's ``json.Marshal``: compact, keys in the order given, no trailing NL."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
