"""Async blob chunks to a blocking ``read()`` for the parser's worker thread.

Decompressing and parsing are CPU work that must not stall the event loop serving pushes and
pulls, so they run in a thread. The thread *pulls* chunks from the async iterator on the loop
(``run_coroutine_threadsafe``) only when it needs more bytes, up to :data:`BATCH` bytes of them
per hop: at most that much and one chunk is held, the upstream response is back-pressured by
TCP, and there is no queue to size. A stop flag and the deadline end the thread promptly when
the verifier is cancelled or too slow.
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


BATCH = 1024 * 1024
"""Bytes of chunks fetched per hop to the loop. A hop costs about 40 us of CPU here (both
threads); the upstream reader's chunks are 256 KiB, so one hop per chunk was about 3% of the
reader's CPU per layer, one per MiB a quarter of that."""


async def _next(chunks: AsyncIterator[bytes]) -> list[bytes]:
    """The next chunks, about :data:`BATCH` bytes of them; none at the end (an empty chunk
    ends the stream, as it always has here)."""
    batch: list[bytes] = []
    size = 0
    while size < BATCH:
        chunk = await anext(chunks, b"")
        if not chunk:
            break
        batch.append(chunk)
        size += len(chunk)
    return batch


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
        self._pending: list[bytes] = []
        """Chunks of the last batch not yet in ``_buffer``, the next one last."""
        self._eof = False
        self.consumed = 0

    def _fill(self) -> bool:
        if not self._pending and not self._fetch():
            return False
        chunk = self._pending.pop()
        # the chunk itself when all before it was read (the usual case): no copy
        self._buffer = self._buffer[self._pos :] + chunk if self._pos < len(self._buffer) else chunk
        self._pos = 0
        return True

    def _fetch(self) -> bool:
        """The next batch of chunks into ``_pending``; False at the end."""
        if self._eof:
            return False
        if self._stop.is_set():
            raise Stopped()
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise LimitExceeded("layer.timeout", "reading the layer took too long")
        future = asyncio.run_coroutine_threadsafe(_next(self._chunks), self._loop)
        try:
            batch = future.result(timeout=remaining)
        except TimeoutError as exc:
            future.cancel()
            raise LimitExceeded("layer.timeout", "the upstream sent the layer too slowly") from exc
        except Exception as exc:
            if self._stop.is_set():
                raise Stopped() from exc
            raise UpstreamFailed(f"{exc.__class__.__name__}: {exc}") from exc
        if not batch:
            self._eof = True
            return False
        self._pending = batch[::-1]
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
        """What ISA-L's and zlib-ng's gzip readers call: one copy, from the chunk into their
        buffer (through :meth:`read`, the slice was a second)."""
        if self._pos >= len(self._buffer):
            self._buffer, self._pos = b"", 0
            self._fill()
        pos = self._pos
        count = min(len(target), len(self._buffer) - pos)
        target[:count] = memoryview(self._buffer)[pos : pos + count]
        self._pos = pos + count
        self.consumed += count
        return count

    def readable(self) -> bool:
        return True
