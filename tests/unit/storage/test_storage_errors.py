"""Database failures leave storage as its own error type, so nothing else (a client hanging up
mid-download is an ``OSError`` too) can be mistaken for a database outage."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from proxy.errors import error_middleware
from storage.db import DATABASE_ERRORS, create_engine, sessionmaker
from storage.errors import DatabaseUnavailable
from tests.support.procs import free_port


def test_an_oserror_is_not_a_database_error() -> None:
    assert not issubclass(OSError, DATABASE_ERRORS)
    assert not issubclass(ConnectionError, DATABASE_ERRORS)
    assert issubclass(DatabaseUnavailable, DATABASE_ERRORS)


async def test_a_refused_connection_is_database_unavailable() -> None:
    engine = create_engine(f"postgresql+asyncpg://x:y@127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(DatabaseUnavailable, match="Connect call failed") as caught:
            async with sessionmaker(engine)() as session:
                await session.execute(text("SELECT 1"))
        assert isinstance(caught.value.__cause__, OSError)
    finally:
        await engine.dispose()


async def test_a_locked_sqlite_database_is_database_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    db = sessionmaker(engine)
    async with db() as session, session.begin():
        await session.execute(text("CREATE TABLE t (a INTEGER PRIMARY KEY)"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailable, match="locked"):
            async with db() as session:  # a deferred transaction: the INSERT asks for the lock
                await session.execute(text("PRAGMA busy_timeout=50"))
                await session.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()


async def test_a_statement_refused_on_its_merits_keeps_its_error(tmp_path: Path) -> None:
    """Callers racing on a key catch ``IntegrityError`` by name: it is not an outage."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    try:
        with pytest.raises(IntegrityError):
            async with sessionmaker(engine)() as session, session.begin():
                await session.execute(text("CREATE TABLE t (a INTEGER PRIMARY KEY)"))
                await session.execute(text("INSERT INTO t VALUES (1)"))
                await session.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        await engine.dispose()


async def test_a_client_hanging_up_is_not_answered_as_a_database_outage() -> None:
    async def hung_up(request: web.Request) -> web.StreamResponse:
        raise ConnectionError("Connection lost")

    async def database_down(request: web.Request) -> web.StreamResponse:
        raise DatabaseUnavailable("ConnectionRefusedError: [Errno 111] Connect call failed")

    request = make_mocked_request("GET", "/v2/app/blobs/sha256:" + "a" * 64)
    with pytest.raises(ConnectionError):
        await error_middleware(request, hung_up)
    answer = await error_middleware(request, database_down)
    assert answer.status == 503
    assert isinstance(answer, web.Response) and b"database is unavailable" in (
        answer.body if isinstance(answer.body, bytes) else b""
    )
