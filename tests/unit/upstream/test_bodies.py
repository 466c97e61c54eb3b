"""A manifest body that stalls is cut off like a stalled upload body."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp import StreamReader

from upstream.bodies import read_at_most


def stream() -> StreamReader:
    protocol = mock.Mock(_reading_paused=False)
    return StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())


async def test_a_stalled_stream_times_out() -> None:
    body = stream()
    body.feed_data(b"partial")
    with pytest.raises(TimeoutError):
        await read_at_most(body, 100, idle_timeout=0.1)


async def test_a_steady_stream_is_read_whole() -> None:
    body = stream()

    async def trickle() -> None:
        for _ in range(5):
            await asyncio.sleep(0.05)
            body.feed_data(b"ab")
        body.feed_eof()

    feeder = asyncio.create_task(trickle())
    assert await read_at_most(body, 100, idle_timeout=0.2) == b"ab" * 5
    await feeder


async def test_without_a_timeout_reads_as_before() -> None:
    body = stream()
    body.feed_data(b"xyz")
    body.feed_eof()
    assert await read_at_most(body, 2) == b"xy"
