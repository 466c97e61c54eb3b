"""Write transactions run whole in a writer thread: one hop from the serving loop.

Every statement is a round trip: the event loop sends it (to aiosqlite's thread, or to
PostgreSQL), and the answer waits in the loop's queue of ready callbacks until the loop gets
to it. On a serving loop with a hundred pulls in flight, each such wait cost tens to hundreds
of milliseconds, and a write transaction spends all of them holding what it locked: on SQLite
the one write turn (``storage.write_queue``): a reservation of an upload slot (a handful of
statements) held the turn for up to 1.9 s, an access-log batch up to 2.2 s, and every
pusher's writes queued behind them for seconds (bench/README.md, "Where the pushes wait"); on
PostgreSQL the row locks of the transaction (one identity's reservations take turns on its
``upload_owners`` row), and an upload's half a dozen transactions took seconds each way.

Here the whole transaction (on SQLite its turn and ``BEGIN IMMEDIATE``; its statements, the
commit) runs on a loop of its own, in a thread of its own, with an engine of its own on the
same database; the serving loop waits for one answer. That loop does nothing else, so an
answer is read as soon as the interpreter lets the thread run (it switches every few
milliseconds), not when a hundred pulls are done. On SQLite its connections need no thread of
their own either: each statement runs at once in the writer's thread (``_InlineConnection``)
instead of being handed to aiosqlite's thread and back, two waits for the interpreter's lock
each while the serving loop keeps it busy. The transaction's coroutine must touch nothing of
the serving loop (its locks, events, tasks, or sessions of the serving engine): it gets its
own session, and what it returns (plain values) comes back through a
``concurrent.futures.Future``.

SQLite's turns are kept as they were: the writer's transactions queue on its loop's lock,
then on the host-wide ``flock`` shared with every other writer of the file (other processes,
and write transactions still opened on the serving loop); those waiting together when the turn
comes run in one SQLite transaction, a savepoint each (``storage.group_commit``). On
PostgreSQL they run side by side on the writer's loop, as they did on the serving one. An
in-memory SQLite database (which a second engine could not see) runs the transaction in the
caller's loop, as ``async with db() as session, session.begin()`` would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import threading
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.db import reader
from storage.group_commit import GroupCommit

WRITER_POOL_SIZE = 10
"""PostgreSQL connections the writer keeps, and never more: a transaction beyond waits for
one. Its transactions are short (nothing else on its loop delays their round trips), so a
few serve a process's writes; the serving loop's pool stays for the reads
(``storage.db.create_engine``). With 5 kept and 5 more opened under a burst, bursts of pushes
(the load test's ten concurrent transactions) opened connections and closed them again on
return, about six a second in the busier serving process: each a PostgreSQL backend started
and authenticated, and every statement prepared again on it. 10 and no overflow keep the
process's connections at 30 at most, as before."""

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[T]]
"""A write transaction's body: given a session inside ``session.begin()``."""


async def transact(db: async_sessionmaker[Any], work: Work[T]) -> T:
    """Run ``work(session)`` in one write transaction, committed when it returns, rolled back
    when it raises (the error is raised here). On a SQLite file it runs in the writer
    thread (see the module's docstring), so ``work`` must not touch the caller's loop."""
    engine = getattr(db, "kw", {}).get("bind")  # a stand-in for a sessionmaker has none
    writer = _writer(engine) if isinstance(engine, AsyncEngine) else None
    if writer is None:
        async with db() as session, session.begin():
            return await work(session)
    return await writer.run(work)


async def read(db: async_sessionmaker[Any], work: Work[T]) -> T:
    """Run ``work(session)`` as a read (no write turn, nothing committed) on the writer's
    loop, as :func:`transact` does: for a read on a request's critical path whose few
    statements, on a serving loop busy with pulls, would each wait for that loop (and first
    for one of its pool's connections, all taken by the pulls' reads). Elsewhere in the
    caller's loop, on PostgreSQL without a transaction (``storage.db.reader``)."""
    engine = getattr(db, "kw", {}).get("bind")
    writer = _writer(engine) if isinstance(engine, AsyncEngine) else None
    if writer is None:
        async with reader(db) as session:  # PostgreSQL: no BEGIN and ROLLBACK around it
            return await work(session)
    return await writer.run(work, write=False)


async def commit_one(db: async_sessionmaker[Any], work: Work[T]) -> T:
    """Run ``work(session)``, a write of exactly one statement, committed when it returns. On
    PostgreSQL outside a transaction (``AUTOCOMMIT``, as :func:`read` runs): a statement is
    atomic by itself, so ``BEGIN`` and ``COMMIT`` would only add two round trips to its one.
    ``work`` must not run a second statement: each would commit on its own. Elsewhere it is
    :func:`transact`."""
    engine = getattr(db, "kw", {}).get("bind")
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        return await transact(db, work)
    return await read(db, work)


async def close(engine: AsyncEngine) -> None:
    """Stop the engine's writer thread (if it has one) once its transactions are done, then
    dispose of the engine: what an owner of an engine calls at its end."""
    writer: Writer | None = getattr(engine.sync_engine, "_gatekeeper_writer", None)
    if writer is not None:
        await asyncio.wrap_future(writer.stop())
    await engine.dispose()


def _writer(engine: AsyncEngine) -> Writer | None:
    """The engine's writer (made on first use), or None where transactions stay in the
    caller's loop (SQLite in memory, which a second engine could not see)."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and (not database or database == ":memory:"):
        return None
    writer: Writer | None = getattr(engine.sync_engine, "_gatekeeper_writer", None)
    if writer is None:
        writer = Writer(engine.url)
        engine.sync_engine._gatekeeper_writer = writer  # type: ignore[attr-defined]
        # An engine dropped without :func:`close` (a test, a short command) stops its thread.
        weakref.finalize(engine.sync_engine, writer.stop)
    return writer


class Writer:
    """A thread running an event loop that runs one SQLite file's write transactions."""

    def __init__(self, url: URL) -> None:
        self._url = url
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: async_sessionmaker[Any] | None = None
        self._engine: AsyncEngine | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._group: GroupCommit | None = None
        self._pid = os.getpid()
        self.thread: threading.Thread | None = None
        """The writer's thread while it runs (tests check where transactions run)."""

    async def run(self, work: Work[T], *, write: bool = True) -> T:
        """``work`` in a write transaction (or ``write=False``: a read) on the writer's loop;
        the caller's loop only waits for the outcome (cancelling the wait cancels the
        transaction: rolled back). A transaction may not hand over another: on SQLite the
        second would wait for the batch the first is part of, for ever."""
        if self.thread is not None and threading.current_thread() is self.thread:
            raise RuntimeError("a transaction of the writer cannot wait for another one")
        loop = self._start()
        ran = asyncio.run_coroutine_threadsafe(self._run(work, write), loop)
        return await asyncio.wrap_future(ran)

    def stop(self) -> concurrent.futures.Future[None]:
        """Let the transactions under way finish, dispose of the writer's engine, end the
        thread. Safe to call from any thread, and more than once."""
        with self._guard:
            loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            done.set_result(None)
            return done
        return asyncio.run_coroutine_threadsafe(self._shutdown(loop), loop)

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._pid != os.getpid():  # a forked child has the object, not the thread
                self._loop, self._sessions, self._engine, self._running = None, None, None, set()
                self._group = None
                self._pid = os.getpid()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                # A daemon: an engine nobody closed must not keep its process alive, and a
                # transaction cut off by the exit is rolled back by SQLite.
                name = f"{self._url.get_backend_name()}-writer"
                thread = threading.Thread(target=self._serve, args=(loop,), name=name, daemon=True)
                thread.start()
                self._loop, self.thread = loop, thread
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _run(self, work: Work[T], write: bool) -> T:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            sessions = self._session_maker()
            if not write:
                async with reader(sessions) as session:
                    return await work(session)
            if self._group is not None:  # SQLite: committed with the others waiting
                return await self._group.run(work)
            async with sessions() as session, session.begin():
                return await work(session)
        finally:
            self._running.discard(task)

    def _session_maker(self) -> async_sessionmaker[Any]:
        if self._sessions is None:
            from storage import db  # storage.db imports nothing from here

            url = self._url.render_as_string(hide_password=False)
            if self._url.get_backend_name() == "sqlite":
                self._engine = db.create_engine(url)
                # Connections without a thread of their own (see _InlineConnection).
                event.remove(self._engine.sync_engine, "do_connect", db._connect)
                event.listen(self._engine.sync_engine, "do_connect", _connect_inline)
                self._group = GroupCommit(self._engine, db.write_queue(self._engine))
            else:
                self._engine = db.create_engine(url, pool_size=WRITER_POOL_SIZE, max_overflow=0)
            self._sessions = db.sessionmaker(self._engine)
        return self._sessions

    async def _shutdown(self, loop: asyncio.AbstractEventLoop) -> None:
        current = asyncio.current_task()
        running = [task for task in self._running if task is not current]
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        if self._group is not None:
            await self._group.drain()  # a transaction whose caller gave up may still run
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = self._sessions = self._group = None
        loop.call_soon(loop.stop)


class _AtOnce:
    """Stands in for the queue of calls to an aiosqlite connection's thread: runs each call
    at once, in the calling thread, and settles its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, call = item
        try:
            result = call()
        except BaseException as exc:  # handed to the awaiting statement, as the thread did
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class _InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection without its thread: the writer's loop does nothing but write
    transactions, so a statement may as well run in its thread, and each one saves two hand
    overs between threads (each of which, with a serving loop busy in the other thread, waits
    for the interpreter's lock)."""

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _AtOnce()  # type: ignore[assignment]

    def __await__(self) -> Any:
        return self._connect().__await__()  # no thread to start


def _connect_inline(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    from storage.errors import DatabaseUnavailable

    def inline(*args: Any, **kwargs: Any) -> _InlineConnection:
        return _InlineConnection(partial(sqlite3.connect, *args, **kwargs))

    try:
        return dialect.dbapi.connect(*cargs, async_creator_fn=inline, **cparams)
    except (OSError, TimeoutError) as exc:
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
