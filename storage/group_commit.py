"""SQLite write transactions that wait together commit together (group commit).

SQLite has one writer per file, so every write transaction of every gatekeeper process of a
host takes its turn (``storage.write_queue``). Under the load test's mixed traffic (200 pullers
and 20 pushers, ``serve --workers 2``) the turn was busy about 85% of the time: each upload
request's transaction held it for 8-10 ms (its ``BEGIN IMMEDIATE``, three or four statements,
the commit, the hand-over between processes; most of that time the writer thread spent waiting
for its process's interpreter lock, not work) and waited 100-400 ms for it, so an upload took
five times as long as the registry's own and uploads ran at 0.4x the registry's rate.

Here the transactions a process's writer has waiting when it gets the turn run one after the
other in one SQLite transaction, each in a savepoint of its own: one turn, one ``BEGIN``, one
commit for all of them. Each still sees the others' writes as if they ran in turn (they do),
one that raises is rolled back to its savepoint alone and raises to its caller, and none is
answered before the commit that makes it durable: a failed commit fails all of them.

A caller that stops waiting (a client that hung up) has its transaction dropped if it has not
started, or cancelled and rolled back to its savepoint if it is running; once it has ended it
is committed with the others, as a transaction whose caller gave up during the ``COMMIT``
would have been.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from storage.write_queue import WriteQueue

T = TypeVar("T")

MAX_BATCH = 64
"""Transactions committed together at most: enough to take everything a process has waiting
under load, few enough that one turn stays short for the other processes."""


@dataclass(eq=False)
class _Waiting(Generic[T]):
    """One caller's transaction, from its arrival to its answer."""

    work: Callable[[AsyncSession], Awaitable[T]]
    answer: asyncio.Future[T]
    task: asyncio.Task[T] | None = None
    """The transaction running in its savepoint (None: not started)."""
    given_up: bool = False
    """The caller stopped waiting."""
    result: Any = None
    error: BaseException | None = None
    """What it returned or raised, answered once the batch is committed."""


class GroupCommit:
    """The write transactions of one SQLite file's writer, committed in batches."""

    def __init__(self, engine: AsyncEngine, queue: WriteQueue, max_batch: int = MAX_BATCH):
        self._engine = engine
        self._queue = queue
        self._max_batch = max_batch
        self._waiting: collections.deque[_Waiting[Any]] = collections.deque()
        self._committer: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """``work(session)`` in a savepoint of the next batch; its result once committed."""
        waiting: _Waiting[T] = _Waiting(work, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_all())
        try:
            return await asyncio.shield(waiting.answer)
        except asyncio.CancelledError:
            waiting.given_up = True
            if waiting.task is not None:
                waiting.task.cancel()  # rolled back to its savepoint if still running
            raise

    async def drain(self) -> None:
        """Wait until every transaction handed over has been answered."""
        while self._committer is not None and not self._committer.done():
            await asyncio.wait([self._committer])

    async def _commit_all(self) -> None:
        while self._waiting:
            try:
                async with self._queue.turn():
                    batch = self._take()
                    if batch:
                        await self._commit(batch)
            except Exception as exc:  # no turn (DatabaseUnavailable): as each would have failed
                for waiting in self._take():
                    _answer(waiting, exc)

    def _take(self) -> list[_Waiting[Any]]:
        batch: list[_Waiting[Any]] = []
        while self._waiting and len(batch) < self._max_batch:
            waiting = self._waiting.popleft()
            if not waiting.given_up:
                batch.append(waiting)
        return batch

    async def _commit(self, batch: list[_Waiting[Any]]) -> None:
        try:
            async with self._engine.connect() as connection:
                await connection.exec_driver_sql("BEGIN IMMEDIATE")
                for waiting in batch:
                    await self._one(connection, waiting)
                await connection.commit()
        except Exception as exc:  # the batch is lost: what ran in it is not committed
            for waiting in batch:
                _answer(waiting, waiting.error or exc)
            return
        for waiting in batch:
            _answer(waiting, waiting.error, waiting.result)

    async def _one(self, connection: AsyncConnection, waiting: _Waiting[Any]) -> None:
        """Run one transaction in its savepoint; its outcome is kept for after the commit."""
        if waiting.given_up:
            return
        waiting.task = asyncio.create_task(_in_savepoint(connection, waiting.work))
        try:
            waiting.result = await asyncio.shield(waiting.task)
        except asyncio.CancelledError as exc:
            if not waiting.task.cancelled():
                raise  # the committer itself is being cancelled
            waiting.error = exc
        except Exception as exc:
            waiting.error = exc
            if not await _open(connection):
                raise  # SQLite ended the whole transaction (a full disk...): the batch fails


async def _in_savepoint(
    connection: AsyncConnection, work: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    session = AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    async with session, session.begin():
        return await work(session)


async def _open(connection: AsyncConnection) -> bool:
    """Whether SQLite's transaction is still open (some errors roll all of it back)."""
    raw = await connection.get_raw_connection()
    return bool(getattr(raw.driver_connection, "in_transaction", False))


def _answer(waiting: _Waiting[Any], error: BaseException | None, result: Any = None) -> None:
    if waiting.given_up or waiting.answer.done():
        return
    if error is not None:
        waiting.answer.set_exception(error)
    else:
        waiting.answer.set_result(result)
