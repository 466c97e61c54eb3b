"""Wake-ups between processes (``services.wakeups``): a second instance stands for another
process (another socket, another PostgreSQL connection)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg
import pytest

from services.wakeups import JOBS, VERDICTS, PostgresWakeups, SocketWakeups, Wakeups, for_database
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


@pytest.mark.database
def test_a_lost_postgresql_listener_connects_again(
    postgres_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database restart or failover cuts the LISTEN connection: it is made again, and what
    was sent meanwhile is delivered once (waiters read the database again)."""
    monkeypatch.setattr(PostgresWakeups, "RETRY_SECONDS", (0.1,))

    async def scenario() -> None:
        one, two = for_database(postgres_db.url), for_database(postgres_db.url)
        assert isinstance(one, PostgresWakeups)
        await one.start()
        await two.start()
        try:
            with one.waiting(JOBS) as caught_up:
                killer = await asyncpg.connect(postgres_db.url.replace("+asyncpg", ""))
                try:
                    pid = one._conn.get_server_pid()
                    await killer.execute("SELECT pg_terminate_backend($1)", pid)
                finally:
                    await killer.close()
                async with asyncio.timeout(10):
                    await caught_up.wait()  # the delivery on reconnection
            assert one._conn is not None and one._conn.get_server_pid() != pid
            assert await _heard(two, one, JOBS)
            assert await _heard(one, two, VERDICTS)
        finally:
            await one.close()
            await two.close()

    asyncio.run(scenario())


def test_a_postgresql_listener_that_cannot_connect_keeps_trying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(PostgresWakeups, "RETRY_SECONDS", (0.05,))
    tried: list[str] = []

    async def refused(dsn: str) -> None:
        tried.append(dsn)
        raise OSError("connection refused")

    monkeypatch.setattr(asyncpg, "connect", refused)

    async def scenario() -> None:
        waiting = PostgresWakeups("postgresql://gk@127.0.0.1:9/gk")
        await waiting.start()
        await asyncio.sleep(0.5)
        await waiting.notify(JOBS)  # nothing to send on: no error
        await waiting.close()
        count = len(tried)
        await asyncio.sleep(0.2)
        assert len(tried) == count  # closing stops the attempts

    asyncio.run(scenario())
    assert len(tried) >= 3


class _SlowConnection:
    """An asyncpg connection whose ``NOTIFY`` waits until let go, recording what it sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.go = asyncio.Event()

    async def execute(self, _query: str, channel: str) -> None:
        await self.go.wait()
        self.sent.append(channel)

    def is_closed(self) -> bool:
        return False

    async def close(self) -> None:
        pass


def test_a_postgresql_wake_up_does_not_wait_for_its_notify() -> None:
    """The caller (a push about to answer its client) returns at once, this process's waiters
    woken; the ``NOTIFY`` follows in a task of its own, and wake-ups asked for while one is
    on its way go out once each after it."""

    async def run() -> None:
        wakeups = PostgresWakeups("postgresql://unused")
        conn = wakeups._conn = _SlowConnection()
        heard: list[str] = []
        wakeups.listen(JOBS, lambda: heard.append(JOBS))
        await asyncio.wait_for(wakeups.notify(JOBS), 1.0)  # not held by the NOTIFY
        assert heard == [JOBS] and conn.sent == []
        await asyncio.sleep(0)  # the sender is on its way with JOBS
        for channel in (JOBS, VERDICTS, JOBS):
            await asyncio.wait_for(wakeups.notify(channel), 1.0)
        conn.go.set()
        await wakeups.close()
        assert conn.sent == [JOBS, JOBS, VERDICTS]

    asyncio.run(run())
