"""Round trips PostgreSQL sessions no longer make. Connections are pinged before use only after
they sat idle (``storage.db.PING_AFTER_IDLE_SECONDS``): a ping is three round trips with
asyncpg, and every session checks a connection out; a connection that does not answer the
ping is replaced. A session that only reads (``storage.db.reading``) runs without ``BEGIN``
and ``ROLLBACK``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db as storage_db
from storage.db import create_engine, reading, sessionmaker
from tests.support.database import Database


@pytest.fixture
async def engine(fresh_db: Database) -> AsyncIterator[AsyncEngine]:
    if fresh_db.backend != "postgresql":
        pytest.skip("SQLite has no server to lose: its connections are never pinged")
    engine = create_engine(fresh_db.url)
    yield engine
    await engine.dispose()


def counting_pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, fail: bool) -> list[Any]:
    pinged: list[Any] = []
    original = engine.dialect.do_ping

    def ping(dbapi_connection: Any) -> bool:
        pinged.append(dbapi_connection)
        if fail and len(pinged) == 1:  # the old connection; the new one answers
            raise ConnectionResetError("the server went away")
        return bool(original(dbapi_connection))

    monkeypatch.setattr(engine.dialect, "do_ping", ping)
    return pinged


async def test_a_connection_in_use_is_not_pinged_and_an_idle_one_is(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinged = counting_pings(engine, monkeypatch, fail=False)
    for _ in range(3):
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
    assert pinged == [], "a new connection, then one used a moment ago"
    monkeypatch.setattr(storage_db, "PING_AFTER_IDLE_SECONDS", 0.0)  # everything is idle now
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1
    assert len(pinged) == 1


async def test_an_idle_connection_that_does_not_answer_is_replaced(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with engine.connect() as conn:
        first = (await conn.get_raw_connection()).driver_connection
    monkeypatch.setattr(storage_db, "PING_AFTER_IDLE_SECONDS", 0.0)
    pinged = counting_pings(engine, monkeypatch, fail=True)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1  # served by a new connection
        replaced = (await conn.get_raw_connection()).driver_connection
    assert len(pinged) >= 1 and replaced is not first


async def test_a_reading_session_runs_each_statement_on_its_own(engine: AsyncEngine) -> None:
    """Inside a transaction ``now()`` is the transaction's start; without one (autocommit),
    each statement's own."""
    moments = text("SELECT clock_timestamp() - now()")
    async with reading(sessionmaker(engine)) as session:
        await session.scalar(text("SELECT pg_sleep(0.01)"))
        outside = await session.scalar(moments)
    async with sessionmaker(engine)() as session:
        await session.scalar(text("SELECT pg_sleep(0.01)"))
        inside = await session.scalar(moments)
    assert outside is not None and inside is not None
    assert outside.total_seconds() < 0.005 <= inside.total_seconds()
