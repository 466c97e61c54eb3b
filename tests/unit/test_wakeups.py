"""Wake-ups between processes (``services.wakeups``): a second instance stands for another
process (another socket, another PostgreSQL connection)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from services.wakeups import JOBS, VERDICTS, SocketWakeups, Wakeups, for_database
from tests.support.database import Database


async def _heard(sender: Wakeups, receiver: Wakeups, channel: str) -> bool:
    with receiver.waiting(channel) as event:
        await sender.notify(channel)
        try:
            async with asyncio.timeout(5):
                await event.wait()
        except TimeoutError:
            return False
    return True


def test_sqlite_processes_of_one_host_hear_each_other(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gk.db'}"

    async def scenario() -> None:
        one, two = for_database(url), for_database(url)
        assert isinstance(one, SocketWakeups)
        await one.start()
        await two.start()
        try:
            assert await _heard(one, two, JOBS)
            assert await _heard(two, one, VERDICTS)
            with two.waiting(VERDICTS) as verdicts:
                await one.notify(JOBS)
                await asyncio.sleep(0.2)
                assert not verdicts.is_set()  # another channel wakes nobody here
        finally:
            await two.close()
        # A process that died without removing its socket: the next sender removes it, and
        # does not fail.
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(str(tmp_path / "gk.db.wake" / "dead.sock"))
        dead.close()
        await one.notify(JOBS)
        assert len(list((tmp_path / "gk.db.wake").iterdir())) == 1
        await one.close()
        assert list((tmp_path / "gk.db.wake").iterdir()) == []

    asyncio.run(scenario())


def test_in_memory_wakes_this_process_only() -> None:
    async def scenario() -> None:
        only = for_database("sqlite+aiosqlite:///:memory:")
        await only.start()
        assert await _heard(only, only, JOBS)
        await only.close()

    asyncio.run(scenario())


@pytest.mark.database
def test_postgresql_processes_hear_each_other(postgres_db: Database) -> None:
    async def scenario() -> None:
        one, two = for_database(postgres_db.url), for_database(postgres_db.url)
        await one.start()
        await two.start()
        try:
            assert await _heard(one, two, JOBS)
            assert await _heard(two, one, VERDICTS)
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())
