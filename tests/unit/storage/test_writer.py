"""SQLite write transactions run whole in the writer thread (``storage.writer``): the serving
loop hands one over and waits for one answer, so a loop busy with other requests does not
stretch the time the transaction holds the write turn (or, on PostgreSQL, its row locks). In
memory they run in the caller's loop as before."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage.db import create_engine, sessionmaker
from storage.errors import DatabaseUnavailable
from storage.write_queue import WriteQueue
from storage.writer import WRITER_POOL_SIZE, close, read, transact
from tests.support.database import Database

ROWS = 20


async def _insert(session: AsyncSession) -> int:
    for x in range(ROWS):
        await session.execute(text("INSERT INTO t VALUES (:x)"), {"x": x})
    return threading.get_ident()


async def _insert_with_this_loop_blocked(
    engine: AsyncEngine, committed: Callable[[], int]
) -> tuple[int, int]:
    """Hand :func:`_insert` to the writer, then block this loop until ``committed()`` says its
    rows are there (30 s at most): the rows committed meanwhile, and the thread that ran it."""
    task = asyncio.create_task(transact(sessionmaker(engine), _insert))
    await asyncio.sleep(0)  # the task hands the transaction over
    deadline = time.monotonic() + 30  # a bound on failure only, not a measurement
    while committed() < ROWS and time.monotonic() < deadline:
        time.sleep(0.01)  # blocks this loop: no callback of it runs meanwhile
    return committed(), await task


def _committed(engine: AsyncEngine) -> int:
    """Rows another connection sees: what was committed."""
    with sqlite3.connect(str(engine.url.database)) as conn:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


async def test_a_transaction_completes_while_the_serving_loop_does_not_run(
    engine: AsyncEngine,
) -> None:
    """The turn, ``BEGIN IMMEDIATE``, twenty statements and the commit all happen while this
    loop is blocked: none of them waits for it. (Run in this loop, each statement's answer
    would wait for it, and nothing would be committed until it ran again.)"""
    committed, thread = await _insert_with_this_loop_blocked(engine, partial(_committed, engine))
    assert committed == ROWS
    assert thread != threading.get_ident()


async def test_the_caller_is_woken_once(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many statements, the serving loop hears from other threads about once (the
    answer), not once per statement as aiosqlite's replies would make it."""
    db = sessionmaker(engine)
    await transact(db, _insert)  # the writer's thread and engine exist already
    loop = asyncio.get_running_loop()
    woken: list[Any] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        woken.append(callback)
        return original(callback, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(loop, "call_soon_threadsafe", counting)
        await transact(db, _insert)
    assert 1 <= len(woken) <= 2
    assert _committed(engine) == 2 * ROWS


async def test_the_writers_statements_need_no_other_thread(engine: AsyncEngine) -> None:
    """The writer's connections run their statements in the writer's thread: no aiosqlite
    thread is started for them (each would be two more hand-overs per statement)."""

    async def threads(session: AsyncSession) -> set[threading.Thread]:
        await _insert(session)
        return set(threading.enumerate())

    before = set(threading.enumerate())
    during = await transact(sessionmaker(engine), threads)
    assert {thread.name for thread in during - before} == {"sqlite-writer"}


async def test_a_failing_transaction_is_rolled_back_and_raises(engine: AsyncEngine) -> None:
    async def fail(session: AsyncSession) -> None:
        await _insert(session)
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await transact(sessionmaker(engine), fail)
    assert _committed(engine) == 0


async def test_no_turn_within_the_limit_is_database_unavailable(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed as before: another process holding the host's write turn past the limit
    makes the writer's transaction a :class:`DatabaseUnavailable`, and nothing is written."""
    monkeypatch.setattr(WriteQueue, "wait_seconds", 0.2)
    path = Path(str(engine.url.database))
    fd = os.open(path.with_name(path.name + ".write-lock"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process's turn, never given back
        with pytest.raises(DatabaseUnavailable, match="another process"):
            await transact(sessionmaker(engine), _insert)
    finally:
        os.close(fd)
    assert _committed(engine) == 0
    await transact(sessionmaker(engine), _insert)  # and the writer still works after
    assert _committed(engine) == ROWS


async def test_in_memory_transactions_stay_in_the_callers_loop() -> None:
    """A second engine would open another, empty, in-memory database."""
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        db = sessionmaker(engine)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))

        async def where(session: AsyncSession) -> tuple[int, Any]:
            await _insert(session)
            return threading.get_ident(), asyncio.get_running_loop()

        assert await transact(db, where) == (threading.get_ident(), asyncio.get_running_loop())
        assert not hasattr(engine.sync_engine, "_gatekeeper_writer")
    finally:
        await close(engine)


async def test_close_ends_the_writer_thread(engine: AsyncEngine) -> None:
    await transact(sessionmaker(engine), _insert)
    writer = engine.sync_engine._gatekeeper_writer  # type: ignore[attr-defined]
    thread = writer.thread
    assert thread is not None and thread.is_alive()
    await close(engine)
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()


async def test_a_read_runs_there_too_and_takes_no_turn(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read on a push's critical path runs on the writer's loop as well, and never waits
    for the write turn (WAL: readers do not wait for the writer)."""
    monkeypatch.setattr(WriteQueue, "wait_seconds", 0.2)
    await transact(sessionmaker(engine), _insert)
    path = Path(str(engine.url.database))
    fd = os.open(path.with_name(path.name + ".write-lock"), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)

        async def count(session: AsyncSession) -> tuple[Any, int]:
            return await session.scalar(text("SELECT count(*) FROM t")), threading.get_ident()

        found, thread = await read(sessionmaker(engine), count)
    finally:
        os.close(fd)
    assert found == ROWS
    assert thread != threading.get_ident()


async def test_a_forked_child_starts_a_writer_of_its_own(engine: AsyncEngine) -> None:
    """A process forked after its parent wrote (``serve --workers``) inherits the writer
    object but not its thread: handing it a transaction would wait forever."""
    db = sessionmaker(engine)
    await transact(db, _insert)
    writer = engine.sync_engine._gatekeeper_writer  # type: ignore[attr-defined]
    parents, parents_loop = writer.thread, writer._loop
    writer._pid = -1  # what the child sees: another process made it
    try:
        await transact(db, _insert)
        assert writer.thread is not parents and writer.thread.is_alive()
        assert _committed(engine) == 2 * ROWS
    finally:
        parents_loop.call_soon_threadsafe(parents_loop.stop)


@pytest.fixture
async def pg_engine(postgres_db: Database) -> AsyncIterator[tuple[AsyncEngine, Database]]:
    engine = create_engine(postgres_db.url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engine, postgres_db
    await close(engine)


async def test_postgresql_transactions_complete_while_the_serving_loop_does_not_run(
    pg_engine: tuple[AsyncEngine, Database],
) -> None:
    """As on SQLite: ``BEGIN``, twenty statements and the commit are all sent and answered
    while this loop is blocked, so a busy serving loop does not stretch how long the
    transaction holds its row locks (an identity's upload reservations take turns on one)."""
    engine, database = pg_engine
    committed, thread = await _insert_with_this_loop_blocked(
        engine, partial(_pg_committed, database)
    )
    assert committed == ROWS
    assert thread != threading.get_ident()
    writer = engine.sync_engine._gatekeeper_writer  # type: ignore[attr-defined]
    assert writer.thread is not None and writer.thread.name == "postgresql-writer"


async def test_postgresql_reads_run_outside_a_transaction(
    pg_engine: tuple[AsyncEngine, Database],
) -> None:
    """A read through the writer (an upload's session checks) is its statements alone:
    no ``BEGIN`` before nor ``ROLLBACK`` after (``storage.db.reader``)."""
    engine, _ = pg_engine

    async def in_transaction(session: AsyncSession) -> bool:
        await session.execute(text("SELECT 1"))
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        return bool(raw.driver_connection.is_in_transaction())  # type: ignore[union-attr]

    db = sessionmaker(engine)
    assert await read(db, in_transaction) is False
    assert await transact(db, in_transaction) is True


def _pg_committed(database: Database) -> int:
    return int(database.fetch("SELECT count(*) AS n FROM t")[0]["n"])


async def test_a_burst_of_postgresql_transactions_keeps_the_writers_connections(
    pg_engine: tuple[AsyncEngine, Database],
) -> None:
    """Thirty transactions at once wait for the writer's connections rather than opening more
    and closing them again when they are returned (each a PostgreSQL backend started and
    authenticated, every statement prepared again on it): a second burst opens none."""
    engine, _ = pg_engine
    db = sessionmaker(engine)

    async def slow(session: AsyncSession) -> None:
        await session.execute(text("SELECT pg_sleep(0.05)"))

    await transact(db, slow)  # the writer and its engine exist now
    writer = engine.sync_engine._gatekeeper_writer  # type: ignore[attr-defined]
    opened: list[bool] = []
    event.listen(writer._engine.sync_engine, "connect", lambda *_: opened.append(True))
    await asyncio.gather(*(transact(db, slow) for _ in range(30)))
    first = len(opened)
    assert 0 < first < WRITER_POOL_SIZE
    await asyncio.gather(*(transact(db, slow) for _ in range(30)))
    assert len(opened) == first
