"""SQLite write transactions take turns (``storage.write_queue``): one at a time in a process
and on a host, woken in order, and a waiter that gives up leaves no lock behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage.errors import DatabaseUnavailable
from storage.write_queue import WriteQueue


async def _overlap(queues: list[WriteQueue], rounds: int) -> int:
    """The most turns ever held at once by tasks taking turns on ``queues``."""
    inside = 0
    most = 0

    async def writer(queue: WriteQueue) -> None:
        nonlocal inside, most
        for _ in range(rounds):
            async with queue.turn():
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.001)
                inside -= 1

    await asyncio.gather(*(writer(q) for q in queues for _ in range(4)))
    return most


def test_one_turn_at_a_time_in_a_process(tmp_path: Path) -> None:
    queue = WriteQueue(tmp_path / "db.sqlite")
    assert asyncio.run(_overlap([queue], rounds=5)) == 1


def test_one_turn_at_a_time_across_queues_of_one_file(tmp_path: Path) -> None:
    """Two queues of one file stand for two processes: the file lock keeps them apart."""
    path = tmp_path / "db.sqlite"
    assert asyncio.run(_overlap([WriteQueue(path), WriteQueue(path)], rounds=5)) == 1


def test_in_memory_database_needs_no_file(tmp_path: Path) -> None:
    assert asyncio.run(_overlap([WriteQueue(None)], rounds=3)) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_cancelled_waiter_leaves_no_lock_behind(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    holder, other = WriteQueue(path), WriteQueue(path)

    async def scenario() -> None:
        async with holder.turn():
            waiting = asyncio.create_task(_take(other))
            await asyncio.sleep(0.05)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        # The cancelled waiter's thread got the lock after the holder let go, and gave it back.
        async with asyncio.timeout(5):
            await _take(other)

    asyncio.run(scenario())


async def _take(queue: WriteQueue) -> None:
    async with queue.turn():
        pass


def test_a_turn_not_given_in_time_is_database_unavailable(tmp_path: Path) -> None:
    """As SQLite's busy timeout was: a stuck writer fails the others (503), never hangs them,
    in this process and across processes; the turn is free again once it lets go."""
    path = tmp_path / "db.sqlite"
    holder, other = WriteQueue(path), WriteQueue(path)
    holder.wait_seconds = other.wait_seconds = 0.2

    async def scenario() -> None:
        async with holder.turn():
            for queue in (holder, other):  # the same process's queue, another process's
                with pytest.raises(DatabaseUnavailable):
                    await _take(queue)
        async with asyncio.timeout(5):
            await _take(holder)
            await _take(other)

    asyncio.run(scenario())
