"""Concurrent identical reads share one (``services.singleflight``), and never an answer that
started before a change the caller arrived after."""

from __future__ import annotations

import asyncio

import pytest

from services.singleflight import SingleFlight


class Reads:
    """A read that waits for the test to let it answer, counting how often it ran."""

    def __init__(self) -> None:
        self.started = 0
        self.gate = asyncio.Event()

    async def read(self) -> int:
        self.started += 1
        number = self.started
        await self.gate.wait()
        return number


async def test_callers_that_arrive_while_a_read_runs_share_it() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    callers = [asyncio.create_task(flight.run("k", reads.read)) for _ in range(50)]
    await asyncio.sleep(0)
    reads.gate.set()
    assert await asyncio.gather(*callers) == [1] * 50
    assert reads.started == 1


async def test_a_finished_read_is_not_a_cache() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    reads.gate.set()
    assert await flight.run("k", reads.read) == 1
    assert await flight.run("k", reads.read) == 2


async def test_keys_do_not_share() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    first = asyncio.create_task(flight.run("a", reads.read))
    second = asyncio.create_task(flight.run("b", reads.read))
    await asyncio.sleep(0)
    reads.gate.set()
    assert sorted(await asyncio.gather(first, second)) == [1, 2]


async def test_a_caller_after_forget_reads_afresh() -> None:
    """A change (the caches dropped) between two callers: the later one must not get the
    answer of a read that began before the change."""
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    before = asyncio.create_task(flight.run("k", reads.read))
    await asyncio.sleep(0)
    flight.forget()
    after = asyncio.create_task(flight.run("k", reads.read))
    await asyncio.sleep(0)
    reads.gate.set()
    assert await before == 1
    assert await after == 2


async def test_an_error_reaches_every_caller() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def fail() -> int:
        await gate.wait()
        raise OSError("database gone")

    callers = [asyncio.create_task(flight.run("k", fail)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    for outcome in await asyncio.gather(*callers, return_exceptions=True):
        assert isinstance(outcome, OSError)


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    reads = Reads()
    first = asyncio.create_task(flight.run("k", reads.read))
    second = asyncio.create_task(flight.run("k", reads.read))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    reads.gate.set()
    assert await second == 1
