"""Replicas starting together on a fresh PostgreSQL database must not race on the schema."""

from __future__ import annotations

import asyncio

import pytest

from storage.db import create_engine, current_revision, head_revision, upgrade
from tests.support.database import Database


async def test_concurrent_upgrades_of_a_fresh_database_all_succeed(fresh_db: Database) -> None:
    if fresh_db.backend != "postgresql":
        pytest.skip("several replicas share PostgreSQL only; SQLite is single-node")
    engines = [create_engine(fresh_db.url) for _ in range(3)]
    try:
        # Without the migration lock the racing DDL fails or deadlocks: bound the wait.
        await asyncio.wait_for(asyncio.gather(*(upgrade(e) for e in engines)), timeout=60)
        assert await current_revision(engines[0]) == head_revision()
    finally:
        for engine in engines:
            await engine.dispose()
