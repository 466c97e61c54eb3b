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


async def test_an_upload_that_does_not_forget_leaves_stale_ones_and_a_full_batch_says_so(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    """The closing PUT forgets stale uploads only now and then (``forget_stale``); when it
    does, a full batch tells it to forget again on its next upload."""
    for n in range(fresh_uploads.PRUNE_BATCH + 5):
        await remember(db, "spray/x", f"sha256:{n:064x}")
    clock.advance(fresh_uploads.KEEP + timedelta(seconds=1))

    async def count() -> int:
        async with db() as session:
            found = await session.scalar(
                select(func.count()).select_from(fresh_uploads.FreshUpload)
            )
        return int(found or 0)

    async def once(digest: str, forget: bool) -> bool:
        async with db() as session, session.begin():
            return await fresh_uploads.remember(session, "a/x", digest, forget_stale=forget)

    assert await once(BLOB, False) is False
    assert await count() == fresh_uploads.PRUNE_BATCH + 6 and await fresh(db, "a/x")
    assert await once(BLOB, True) is True  # a full batch: more may be waiting
    assert await count() == 6
    assert await once(BLOB, True) is False  # the last five
    assert await count() == 1
