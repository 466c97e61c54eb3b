"""SQLite write transactions take turns in a queue instead of polling for the lock.

SQLite has one writer at a time. A ``BEGIN IMMEDIATE`` that finds the lock taken does not wait
in line: the driver's busy handler sleeps and retries (1, 2, 5, 10 ... 100 ms apart), so under
load a write transaction waits up to 100 ms past the moment the lock was freed, and whoever
retries at the right moment goes first. Twenty concurrent pushers (each upload touches the
session table two or three times) made that the largest part of an upload's latency: p99 of
4.3 s against 0.4 s direct in ``bench.load_test --quick``.

Here a write transaction first takes its turn: an ``asyncio.Lock`` among the tasks of this
process (first come, first served, woken the moment the previous one commits), then an
``flock`` on a file beside the database among the processes of this host (``gatekeeper serve
--workers N`` and ``gatekeeper worker``), taken in a worker thread so the event loop keeps
serving. Only then does ``BEGIN IMMEDIATE`` run, and it finds the lock free. Readers never
queue (WAL: they do not block the writer nor wait for it). Other programs writing the file
(the CLI, ``sqlite3``) still meet the busy timeout as before.

The turn is held for as long as the transaction runs, so the busiest ones run whole in a
writer thread on a loop of their own (``storage.writer``), where a statement does not wait for
a serving loop busy with pulls; their turns queue on that loop's lock, then on the same file.

A write transaction that needs a second one before it ends would wait for itself; SQLite's
``BEGIN IMMEDIATE`` already made that a 30-second failure, so no code path does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

from storage.errors import DatabaseUnavailable

WAIT_SECONDS = 30.0
"""The longest a write transaction waits for its turn: SQLite's busy timeout before."""


class WriteQueue:
    """The turn of one SQLite database's write transactions, in this process and host."""

    wait_seconds: float = WAIT_SECONDS

    def __init__(self, database: Path | None) -> None:
        """``database``: the SQLite file (None: in memory, so this process only)."""
        self._lock_path = database.with_name(database.name + ".write-lock") if database else None
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def _local(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the writer's turn for the body of the ``async with``. A turn not given within
        :data:`WAIT_SECONDS` is :class:`DatabaseUnavailable`, as SQLite's busy timeout was:
        a writer stuck holding it must fail the others (503), not hang them."""
        local = self._local()
        try:
            async with asyncio.timeout(self.wait_seconds):
                await local.acquire()
        except TimeoutError as exc:
            raise DatabaseUnavailable(
                f"no write turn on the database within {self.wait_seconds:g} s"
            ) from exc
        try:
            try:
                async with asyncio.timeout(self.wait_seconds):
                    fd = await self._host_lock()
            except TimeoutError as exc:
                raise DatabaseUnavailable(
                    f"another process held the database's write turn for {self.wait_seconds:g} s"
                ) from exc
            try:
                yield
            finally:
                if fd >= 0:
                    os.close(fd)  # closing the file lets the lock go
        finally:
            local.release()

    async def _host_lock(self) -> int:
        """The host-wide turn (the file's lock), or -1 without a file."""
        if self._lock_path is None:
            return -1
        # Opened per turn (about 10 us): a file kept open would outlive engines nobody closes.
        fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no thread needed
            return fd
        except BlockingIOError:
            pass
        waiting = asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread still gets the lock: give it back once it has, or no process of
            # this host could ever write again.
            waiting.add_done_callback(lambda _: os.close(fd))
            raise
        except BaseException:
            os.close(fd)
            raise
        return fd
