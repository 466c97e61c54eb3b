"""Large random layers on disk, written and hashed as a stream, and cheap unique variants of them.

A gigabyte is never held in memory: the layer is written in 4 MiB chunks while it is hashed.
Push measurements need a blob the registry has never seen for every run, yet writing and hashing
a fresh gigabyte each time would cost more than the push itself. So a variant is the same file
with a 16-byte nonce appended, and its digest comes from a copy of the hash state saved before the
nonce: both cost nothing, and every variant's digest is new to the registry.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CHUNK = 4 * 1024 * 1024
_TAR_BLOCK = 512
_TAR_END = 2 * _TAR_BLOCK


@dataclass(frozen=True)
class BlobFile:
    """A blob's content on disk and the identity the registry will know it by."""

    path: Path
    """Where the bytes are; curl uploads straight from here."""
    digest: str
    """``sha256:<hex>`` of exactly ``size`` bytes of ``path``."""
    size: int
    """Length in bytes."""


class RandomLayer:
    """An uncompressed tar holding one random file, so verifiers that open layers can read it.

    Random content keeps any compression on the path (there should be none) from flattering a
    target; a real tar keeps a gatekeeper that scans layers from rejecting the image outright.
    """

    def __init__(self, blob: BlobFile, state: hashlib._Hash) -> None:
        self.blob = blob
        self._state = state

    @classmethod
    def create(cls, path: Path, size: int) -> RandomLayer:
        """Write a layer of exactly ``size`` bytes (a multiple of 512, at least 2 KiB)."""
        if size % _TAR_BLOCK or size < 4 * _TAR_BLOCK:
            raise ValueError(f"layer size must be a multiple of 512 and >= 2048, got {size}")
        info = tarfile.TarInfo("random.bin")
        info.size = size - _TAR_BLOCK - _TAR_END
        header = info.tobuf(format=tarfile.USTAR_FORMAT)
        state = hashlib.sha256()
        with path.open("wb") as out:
            for chunk in _tar_chunks(header, info.size):
                state.update(chunk)
                out.write(chunk)
        blob = BlobFile(path=path, digest=f"sha256:{state.hexdigest()}", size=size)
        return cls(blob, state)

    @contextmanager
    def unique_variant(self) -> Iterator[BlobFile]:
        """The layer plus a fresh nonce, for as long as the ``with`` block runs.

        Tar readers stop at the end-of-archive blocks, so the trailing nonce is harmless. The file
        is truncated back afterwards, so variants must not overlap.
        """
        nonce = uuid.uuid4().bytes
        state = self._state.copy()
        state.update(nonce)
        with self.blob.path.open("ab") as out:
            out.write(nonce)
        try:
            yield BlobFile(
                path=self.blob.path,
                digest=f"sha256:{state.hexdigest()}",
                size=self.blob.size + len(nonce),
            )
        finally:
            os.truncate(self.blob.path, self.blob.size)


def _tar_chunks(header: bytes, payload_size: int) -> Iterator[bytes]:
    yield header
    remaining = payload_size
    while remaining:
        step = min(CHUNK, remaining)
        yield os.urandom(step)
        remaining -= step
    yield bytes(-payload_size % _TAR_BLOCK + _TAR_END)


def scratch_dir(parent: Path, size: int) -> Path:
    """Where to write the source layer: tmpfs when it has room, else ``parent``.

    On tmpfs the source costs no disk writeback while the registry is busy writing pushes.
    """
    shm = Path("/dev/shm")
    try:
        stats = os.statvfs(shm)
    except OSError:
        return parent
    if stats.f_bavail * stats.f_frsize > 2 * size + 256 * 1024 * 1024:
        return shm
    return parent
