"""Async blob chunks to a blocking ``read()`` for the parser's worker thread.

Decompressing and parsing are CPU work that must not stall the event loop serving pushes and
pulls, so they run in a thread. The thread *pulls* each chunk from the async iterator on the
loop (``run_coroutine_threadsafe``) only when it needs more bytes: at most one chunk is held,
the upstream response is back-pressured by TCP, and there is no queue to size. A stop flag and
the deadline end the thread promptly when the verifier is cancelled or too slow.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

from verifiers.scan.decompress import LimitExceeded
from verifiers.scan.errors import ScanError


class Stopped(Exception):
    """The async side gave up (cancelled or timed out); the thread just ends."""


class UpstreamFailed(ScanError):
    """Reading the blob from the upstream failed (not the layer's fault)."""


async def _next(chunks: AsyncIterator[bytes]) -> bytes:
    return await anext(chunks, b"")


class ChunkSource:
    """Blocking reads over an async chunk iterator; counts compressed bytes consumed."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        stop: threading.Event,
    ) -> None:
        self._chunks = chunks
        self._loop = loop
        self._deadline = deadline
        self._stop = stop
        self._buffer = b""
        self._pos = 0
        self._eof = False
        self.consumed = 0

    def _fill(self) -> bool:
        if self._eof:
            return False
        if self._stop.is_set():
            raise Stopped()
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise LimitExceeded("layer.timeout", "reading the layer took too long")
        future = asyncio.run_coroutine_threadsafe(_next(self._chunks), self._loop)
        try:
            chunk = future.result(timeout=remaining)
        except TimeoutError as exc:
            future.cancel()
            raise LimitExceeded("layer.timeout", "the upstream sent the layer too slowly") from exc
        except Exception as exc:
            if self._stop.is_set():
                raise Stopped() from exc
            raise UpstreamFailed(f"{exc.__class__.__name__}: {exc}") from exc
        if not chunk:
            self._eof = True
            return False
        self._buffer = self._buffer[self._pos :] + chunk
        self._pos = 0
        return True

    def head(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at EOF), without consuming them."""
        while len(self._buffer) - self._pos < size and self._fill():
            pass
        return self._buffer[self._pos : self._pos + size]

    def read(self, size: int = -1, /) -> bytes:
        """At most ``size`` bytes; fewer only at the end of a chunk; empty at EOF."""
        if self._pos >= len(self._buffer):
            self._buffer, self._pos = b"", 0
            self._fill()
        end = len(self._buffer) if size < 0 else min(len(self._buffer), self._pos + size)
        data = self._buffer[self._pos : end]
        self._pos = end
        self.consumed += len(data)
        return data

    def readinto(self, target: bytearray | memoryview) -> int:
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True
