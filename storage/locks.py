"""A cluster-wide lock, so periodic work runs once however many replicas share the database.

PostgreSQL: ``pg_try_advisory_lock`` on a connection of its own, held for one scheduler tick
and released at its end. A replica that dies mid-tick loses its connection, and PostgreSQL
releases the lock with it, so nobody waits for an expiry. The connection runs in autocommit,
so holding the lock never keeps a transaction open.

SQLite is a single node, but nothing stops two processes from opening one database file (a
second ``serve`` by mistake, ``gatekeeper advisories sync`` next to the server). A lease row
costs one guarded UPDATE per tick and covers that case too; a process that dies holds it until
``lease_seconds`` pass, and the holder renews it while it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, cast

from sqlalchemy import CursorResult, or_, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage.db import DATABASE_ERRORS
from storage.models import SchedulerLease
from storage.timeutil import now as utcnow
from storage.writer import transact

log = logging.getLogger("gatekeeper.scheduler")


class ClusterLock(Protocol):
    """``async with lock.hold() as held:`` runs the body in every process; ``held`` says
    whether this one won the lock (only then may it do the cluster-wide work)."""

    def hold(self) -> contextlib.AbstractAsyncContextManager[bool]: ...


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    digest = hashlib.sha256(f"registry-gatekeeper:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgAdvisoryLock:
    """A session-level advisory lock, taken per tick on a dedicated connection."""

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self._engine = engine
        self._key = lock_key(name)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[bool]:
        conn = await self._engine.connect()
        try:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            held = bool(
                await conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key})
            )
        except BaseException:
            await conn.close()
            raise
        try:
            yield held
        finally:
            await self._release(conn, held)

    async def _release(self, conn: Any, held: bool) -> None:
        try:
            if held:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        except BaseException:
            # A pooled connection must never go back still holding the lock: drop it, and
            # PostgreSQL releases the lock with the session.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            raise
        finally:
            with contextlib.suppress(Exception):
                await conn.close()


class LeaseLock:
    """A lease row (SQLite): claimed by a guarded UPDATE, renewed while held."""

    def __init__(
        self, db: async_sessionmaker[Any], name: str, owner: str, lease_seconds: float
    ) -> None:
        self._db = db
        self._name = name
        self._owner = owner
        self._lease = timedelta(seconds=lease_seconds)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[bool]:
        if not await self._claim():
            yield False
            return
        renew = asyncio.create_task(self._renew())
        try:
            yield True
        finally:
            renew.cancel()
            try:
                # wait(), not ``await renew`` under suppress(CancelledError): that would also
                # swallow a cancellation of *this* task arriving meanwhile (a stop).
                await asyncio.wait([renew])
            finally:
                await self._give_back()

    async def _claim(self) -> bool:
        moment = utcnow()
        try:
            return await self._claim_at(moment)
        except IntegrityError:  # another process inserted the row first
            return False

    async def _claim_at(self, moment: datetime) -> bool:
        return await transact(self._db, partial(self._claim_in, moment=moment))

    async def _claim_in(self, session: AsyncSession, moment: datetime) -> bool:
        """In the writer thread (``storage.writer``): reads only this lease's constants."""
        won = await session.execute(
            update(SchedulerLease)
            .execution_options(synchronize_session=False)
            .where(
                SchedulerLease.name == self._name,
                or_(
                    SchedulerLease.owner == self._owner,
                    SchedulerLease.expires_at < moment,
                ),
            )
            .values(owner=self._owner, expires_at=moment + self._lease)
        )
        if cast("CursorResult[Any]", won).rowcount == 1:
            return True
        if await session.get(SchedulerLease, self._name) is not None:
            return False
        session.add(
            SchedulerLease(name=self._name, owner=self._owner, expires_at=moment + self._lease)
        )
        return True

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            try:
                await self._claim()
            except DATABASE_ERRORS as exc:
                log.warning("cannot renew the scheduler lease: %s", exc)

    async def _give_back(self) -> None:
        try:
            given_back = (
                update(SchedulerLease)
                .execution_options(synchronize_session=False)
                .where(SchedulerLease.name == self._name, SchedulerLease.owner == self._owner)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            await transact(self._db, lambda session: session.execute(given_back))
        except DATABASE_ERRORS as exc:
            log.warning("cannot give back the scheduler lease (it expires by itself): %s", exc)


def cluster_lock(
    engine: AsyncEngine,
    db: async_sessionmaker[Any],
    owner: str,
    lease_seconds: float,
    *,
    name: str = "scheduler",
) -> ClusterLock:
    """The right lock for the database behind ``engine``: ``scheduler`` for the ticks,
    ``advisory-sync`` for a mirror sync (which may take far longer than a tick)."""
    if engine.dialect.name == "postgresql":
        return PgAdvisoryLock(engine, name)
    return LeaseLock(db, name, owner, lease_seconds)
