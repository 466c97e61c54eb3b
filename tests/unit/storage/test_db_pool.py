"""PostgreSQL's pool: a connection used a moment ago is handed out without a ping, one that sat
idle is pinged with one round trip and replaced if the server dropped it, and a read session
runs its statements without ``BEGIN`` and ``ROLLBACK`` (``storage.db``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db as storage_db
from storage.db import create_engine, reader, sessionmaker
from tests.support.database import Database
from tests.support.roundtrips import COUNTED, RoundTrips


@pytest.fixture
async def engine(postgres_db: Database) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_db.url, pool_size=1)
    yield engine
    await engine.dispose()


async def _select_one(engine: AsyncEngine) -> int:
    """Round trips of one ``SELECT 1`` in a read session (its statement already prepared)."""
    with RoundTrips().counting() as trips:
        token = COUNTED.set(True)
        try:
            async with reader(sessionmaker(engine)) as session:
                assert await session.scalar(text("SELECT 1")) == 1
        finally:
            COUNTED.reset(token)
    return trips.total - trips.calls["prepare"]


async def test_a_connection_used_a_moment_ago_is_not_pinged(engine: AsyncEngine) -> None:
    await _select_one(engine)  # connects, prepares
    assert await _select_one(engine) == 1  # the statement alone: no ping, BEGIN, ROLLBACK


async def test_an_idle_connection_is_pinged_once(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _select_one(engine)
    monkeypatch.setattr(storage_db, "PING_IDLE_SECONDS", 0.0)
    assert await _select_one(engine) == 2  # the ping (a bare ``;``), then the statement


async def test_an_idle_connection_the_server_dropped_is_replaced(
    engine: AsyncEngine, postgres_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``pool_pre_ping`` was for: a database restarted (or a proxy cutting quiet
    connections) while the pool held a connection costs no failed request."""
    async with sessionmaker(engine)() as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
    postgres_db.execute("SELECT pg_terminate_backend(:pid)", {"pid": pid})
    monkeypatch.setattr(storage_db, "PING_IDLE_SECONDS", 0.0)
    async with sessionmaker(engine)() as session:
        assert await session.scalar(text("SELECT pg_backend_pid()")) != pid


async def test_a_read_session_writes_nothing_in_a_transaction(engine: AsyncEngine) -> None:
    """The read session is ``AUTOCOMMIT``; an ordinary session still opens a transaction."""
    async with reader(sessionmaker(engine)) as session:
        await session.execute(text("SELECT 1"))
        raw = await (await session.connection()).get_raw_connection()
        assert raw.driver_connection.is_in_transaction() is False  # type: ignore[union-attr]
    async with sessionmaker(engine)() as session:
        await session.execute(text("SELECT 1"))
        raw = await (await session.connection()).get_raw_connection()
        assert raw.driver_connection.is_in_transaction() is True
