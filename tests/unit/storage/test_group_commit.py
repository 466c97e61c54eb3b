"""SQLite write transactions waiting together commit together (``storage.group_commit``):
one turn and one commit for the batch, each transaction in its own savepoint, so each still
succeeds or fails alone, and none is answered before the commit that makes it durable."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from storage.db import sessionmaker
from storage.writer import transact


@pytest.fixture
def commits() -> Iterator[list[int]]:
    """Every commit of every engine while the test runs (the writer's engine's too)."""
    seen: list[int] = []

    def commit(conn: Any) -> None:
        seen.append(id(conn))

    event.listen(Engine, "commit", commit)
    yield seen
    event.remove(Engine, "commit", commit)


def _committed(engine: AsyncEngine) -> list[int]:
    with sqlite3.connect(str(engine.url.database)) as conn:
        return sorted(int(row[0]) for row in conn.execute("SELECT x FROM t"))


class _HostTurnHeld:
    """Another process's write turn (the host lock), held until :meth:`release`, so that
    transactions handed over meanwhile wait together."""

    def __init__(self, engine: AsyncEngine) -> None:
        path = Path(str(engine.url.database))
        self._fd = os.open(path.with_name(path.name + ".write-lock"), os.O_CREAT | os.O_RDWR)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


async def _insert(x: int, session: AsyncSession) -> int:
    await session.execute(text("INSERT INTO t VALUES (:x)"), {"x": x})
    return x


async def _until_waiting(engine: AsyncEngine, count: int) -> None:
    """Until ``count`` transactions wait in the writer (a bound on failure only)."""
    writer = engine.sync_engine._gatekeeper_writer  # type: ignore[attr-defined]
    for _ in range(3000):
        group = writer._group
        if group is not None and len(group._waiting) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} transactions never waited together")


async def _until_given_up(engine: AsyncEngine) -> None:
    """Until the writer has heard that a waiting transaction's caller gave up."""
    group = engine.sync_engine._gatekeeper_writer._group  # type: ignore[attr-defined]
    for _ in range(3000):
        if any(waiting.given_up for waiting in list(group._waiting)):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the writer never heard of the cancellation")


async def _started(engine: AsyncEngine, db: Any) -> None:
    """The writer's thread and engine exist (a first transaction ran)."""
    await transact(db, lambda session: session.execute(text("SELECT 1")))


async def test_transactions_waiting_together_share_one_commit(
    engine: AsyncEngine, commits: list[int]
) -> None:
    db = sessionmaker(engine)
    await _started(engine, db)
    held = _HostTurnHeld(engine)
    try:
        calls = [asyncio.create_task(transact(db, partial(_insert, x))) for x in range(8)]
        await _until_waiting(engine, 8)
        commits.clear()
    finally:
        held.release()
    assert await asyncio.gather(*calls) == list(range(8))
    assert _committed(engine) == list(range(8))
    assert len(commits) == 1


async def test_one_that_fails_is_rolled_back_alone_and_raises_to_its_caller(
    engine: AsyncEngine,
) -> None:
    db = sessionmaker(engine)
    await _started(engine, db)

    async def fails(session: AsyncSession) -> None:
        await _insert(100, session)
        raise ValueError("refused")

    held = _HostTurnHeld(engine)
    try:
        before = asyncio.create_task(transact(db, lambda s: _insert(1, s)))
        failing = asyncio.create_task(transact(db, fails))
        after = asyncio.create_task(transact(db, lambda s: _insert(2, s)))
        await _until_waiting(engine, 3)
    finally:
        held.release()
    assert await before == 1 and await after == 2
    with pytest.raises(ValueError, match="refused"):
        await failing
    assert _committed(engine) == [1, 2]


async def test_nobody_is_answered_before_the_commit_and_a_failed_commit_fails_them_all(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sessionmaker(engine)
    await _started(engine, db)
    original = AsyncConnection.commit
    answered_before_commit: list[bool] = []
    calls: list[asyncio.Task[int]] = []

    async def failing_commit(self: AsyncConnection) -> None:
        answered_before_commit.extend(call.done() for call in calls)
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    held = _HostTurnHeld(engine)
    try:
        calls.extend(asyncio.create_task(transact(db, partial(_insert, x))) for x in (1, 2))
        await _until_waiting(engine, 2)
        monkeypatch.setattr(AsyncConnection, "commit", failing_commit)
    finally:
        held.release()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert answered_before_commit == [False, False]
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes), outcomes
    assert _committed(engine) == []
    monkeypatch.setattr(AsyncConnection, "commit", original)
    assert await transact(db, lambda s: _insert(3, s)) == 3  # the writer goes on
    assert _committed(engine) == [3]


async def test_a_caller_that_gives_up_has_its_transaction_dropped_or_rolled_back(
    engine: AsyncEngine,
) -> None:
    db = sessionmaker(engine)
    await _started(engine, db)
    entered = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def slow(session: AsyncSession) -> None:
        await _insert(10, session)
        loop.call_soon_threadsafe(entered.set)
        await asyncio.sleep(30)  # cancelled long before

    held = _HostTurnHeld(engine)
    try:
        running = asyncio.create_task(transact(db, slow))
        dropped = asyncio.create_task(transact(db, lambda s: _insert(20, s)))
        kept = asyncio.create_task(transact(db, lambda s: _insert(30, s)))
        await _until_waiting(engine, 3)
        dropped.cancel()  # before its batch starts
        await _until_given_up(engine)
    finally:
        held.release()
    await asyncio.wait_for(entered.wait(), 30)
    running.cancel()  # while it runs: rolled back to its savepoint
    assert await kept == 30
    for task in (running, dropped):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert _committed(engine) == [30]


async def test_a_transaction_handing_over_another_fails_at_once_instead_of_waiting(
    engine: AsyncEngine,
) -> None:
    """The inner one would wait for the batch the outer one is part of: a hang, not an error."""
    db = sessionmaker(engine)

    async def nested(session: AsyncSession) -> None:
        await _insert(1, session)
        await transact(db, partial(_insert, 2))

    with pytest.raises(RuntimeError, match="cannot wait for another"):
        await asyncio.wait_for(transact(db, nested), 30)
    assert _committed(engine) == []
