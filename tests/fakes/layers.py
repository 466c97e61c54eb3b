"""Fakes of what the layer-reading verifiers get through small interfaces: a blob opener over
in-memory or generated layers, a layer cache and an inventory sink that remember what they were
given."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from verifiers.scan.model import ImageInventory

CHUNK = 64 * 1024


class FakeBlobs:
    """``BlobOpener`` over bytes (or a generator of chunks), counting every open; with ``hang``
    an opened blob never delivers a chunk (a verifier must then end by its own timeout)."""

    def __init__(self, *, hang: bool = False) -> None:
        self.blobs: dict[str, Callable[[], Iterable[bytes]]] = {}
        self.opened: list[str] = []
        self.hang = hang

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
            if self.hang:
                await asyncio.Event().wait()
            for chunk in source():
                yield chunk

        yield chunks()


class MemoryCache:
    """A layer cache in memory; the first outcome stored for a key stays, as in the database."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], dict[str, Any]] = {}

    async def get(self, layer_digest: str, verifier: str, version: str) -> dict[str, Any] | None:
        return self.rows.get((layer_digest, verifier, version))

    async def put(
        self, layer_digest: str, verifier: str, version: str, outcome: dict[str, Any]
    ) -> None:
        self.rows.setdefault((layer_digest, verifier, version), outcome)


class MemorySink:
    """An inventory sink that keeps what it was given, by repository and digest."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], ImageInventory] = {}

    async def store(self, repository: str, digest: str, inventory: ImageInventory) -> None:
        self.stored[(repository, digest)] = inventory
