"""Blobs uploaded lately, per repository (``storage/fresh_uploads.py``): what the gate lets
pushers read back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from storage import fresh_uploads
from tests.fakes.clock import Clock

BLOB = "sha256:" + "a" * 64


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(fresh_uploads, "now", clock)
    return clock


async def remember(db: async_sessionmaker[Any], repository: str, digest: str = BLOB) -> None:
    async with db() as session, session.begin():
        await fresh_uploads.remember(session, repository, digest)


async def fresh(db: async_sessionmaker[Any], repository: str, digest: str = BLOB) -> bool:
    async with db() as session:
        return await fresh_uploads.fresh(session, repository, digest)


async def test_fresh_per_repository_for_a_day(db: async_sessionmaker[Any], clock: Clock) -> None:
    assert not await fresh(db, "a/x")
    await remember(db, "a/x")
    assert await fresh(db, "a/x") and not await fresh(db, "b/x")
    clock.advance(fresh_uploads.KEEP - timedelta(seconds=1))
    assert await fresh(db, "a/x")
    await remember(db, "a/x")  # uploaded again: fresh again from now
    clock.advance(fresh_uploads.KEEP - timedelta(seconds=1))
    assert await fresh(db, "a/x")
    clock.advance(timedelta(seconds=2))
    assert not await fresh(db, "a/x")


async def test_stale_uploads_are_forgotten_by_later_ones(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    for n in range(fresh_uploads.PRUNE_BATCH + 5):
        await remember(db, "spray/x", f"sha256:{n:064x}")
    clock.advance(fresh_uploads.KEEP + timedelta(seconds=1))
    await remember(db, "a/x")
    await remember(db, "a/x")

    async with db() as session:
        rows = await session.scalar(select(func.count()).select_from(fresh_uploads.FreshUpload))
    assert rows == 1
