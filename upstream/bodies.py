"""A bounded read of a body, for the bodies the gatekeeper reads whole (manifests, tag lists,
catalog pages, error bodies): never more than the caller's limit, and never stuck on a stream
that stops delivering."""

from __future__ import annotations

import asyncio

import aiohttp


async def read_at_most(
    stream: aiohttp.StreamReader, limit: int, *, idle_timeout: float | None = None
) -> bytes:
    """Read until EOF or ``limit`` bytes, whichever comes first (``read(n)`` alone returns
    whatever happens to be buffered, which for a chunked body may be far less than ``n``).

    With ``idle_timeout``, a stream that delivers nothing for that long raises
    ``TimeoutError``: the same slowloris bound ``proxy.forward.counted_body`` puts on uploads.
    """
    parts: list[bytes] = []
    size = 0
    while size < limit:
        async with asyncio.timeout(idle_timeout):
            chunk = await stream.read(limit - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)
