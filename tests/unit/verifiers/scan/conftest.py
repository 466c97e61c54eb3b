"""Fakes of the scan package's interfaces: a blob opener over in-memory or generated layers, a
layer cache and an inventory sink that remember what they were given."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any

from verifiers.scan.model import ImageInventory

CHUNK = 64 * 1024


class FakeBlobs:
    """``BlobOpener`` over bytes (or a generator of chunks), counting every open."""

    def __init__(self) -> None:
        self.blobs: dict[str, Callable[[], Iterable[bytes]]] = {}
        self.opened: list[str] = []

    def add(self, digest: str, data: bytes) -> str:
        self.blobs[digest] = lambda: (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
        return digest

    def add_stream(self, digest: str, chunks: Callable[[], Iterable[bytes]]) -> str:
        self.blobs[digest] = chunks
        return digest

    @asynccontextmanager
    async def open(self, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        self.opened.append(digest)
        source = self.blobs[digest]

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in source():
                yield chunk

        yield chunks()


class MemoryCache:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], dict[str, Any]] = {}

    async def get(self, layer_digest: str, verifier: str, version: str) -> dict[str, Any] | None:
        return self.rows.get((layer_digest, verifier, version))

    async def put(
        self, layer_digest: str, verifier: str, version: str, outcome: dict[str, Any]
    ) -> None:
        self.rows.setdefault((layer_digest, verifier, version), outcome)


class MemorySink:
    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], ImageInventory] = {}

    async def store(self, repository: str, digest: str, inventory: ImageInventory) -> None:
        self.stored[(repository, digest)] = inventory


def tar_bytes(members: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A tar of explicit members (names and types as given, hostile ones included)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def files(entries: dict[str, bytes]) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    for name, data in entries.items():
        yield tarfile.TarInfo(name), data


def special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, None
