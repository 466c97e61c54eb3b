"""Verdict queries on a real SQLite database."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

from sqlalchemy import select

from storage import verdicts
from storage.models import Verdict
from storage.timeutil import now

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


async def test_by_digest_finds_the_digest_in_every_repository(db: Any) -> None:
    async with db() as session, session.begin():
        for repository, digest in (
            ("team/web", DIGEST),
            ("app/x", DIGEST),
            ("sigs/app", DIGEST),
            ("app/x", OTHER),
        ):
            await verdicts.ensure_pending(session, repository, digest, "test", "pushed")
    async with db() as session:
        found = await verdicts.by_digest(session, DIGEST)
        assert [(v.repository, v.digest) for v in found] == [
            ("app/x", DIGEST),
            ("sigs/app", DIGEST),
            ("team/web", DIGEST),
        ]
        assert [v.repository for v in await verdicts.by_digest(session, DIGEST, limit=2)] == [
            "app/x",
            "sigs/app",
        ]
        assert await verdicts.by_digest(session, "sha256:" + "c" * 64) == []


async def test_times_with_an_offset_are_stored_and_compared_as_utc(db: Any) -> None:
    """SQLite keeps wall-clock text: without the UTC conversion on the way in, an end written
    with -10:00 came back ten hours early, and the release had already expired."""
    end = now() + timedelta(minutes=10)
    hawaii = end.astimezone(timezone(timedelta(hours=-10)))
    async with db() as session, session.begin():
        await verdicts.ensure_pending(session, "team/app", DIGEST, "test", "pushed")
        await verdicts.release(session, "team/app", DIGEST, "admin", "hotfix", hawaii)
    async with db() as session:
        stored = await verdicts.get(session, "team/app", DIGEST)
        assert stored is not None and stored.release_expires == end
        assert stored.release_expires.utcoffset() == timedelta(0)
        assert stored.effective_state() == "released" and stored.pullable()
    async with db() as session, session.begin():
        assert await verdicts.expire_releases(session) == []
    async with db() as session:
        # A time compared with the column (``audit --since``, the sweep) is converted too.
        for offset, count in ((timedelta(minutes=-1), 1), (timedelta(minutes=1), 0)):
            bound = (end + offset).astimezone(timezone(timedelta(hours=-10)))
            found = await session.scalars(select(Verdict).where(Verdict.release_expires > bound))
            assert len(found.all()) == count, offset


async def test_the_sweep_reads_before_it_writes_and_finds_only_expired_releases(db: Any) -> None:
    """The sweep runs every second in every process: it asks with a read whether a release has
    run out, and takes a write turn only then."""
    async with db() as session, session.begin():
        for digest in (DIGEST, OTHER):
            await verdicts.ensure_pending(session, "team/app", digest, "test", "pushed")
        await verdicts.release(
            session, "team/app", DIGEST, "admin", "hotfix", now() + timedelta(minutes=10)
        )
    async with db() as session:
        assert not await verdicts.any_release_expired(session)  # released, not yet expired
    async with db() as session, session.begin():
        await verdicts.release(
            session, "team/app", OTHER, "admin", "hotfix", now() - timedelta(seconds=1)
        )
    async with db() as session:
        assert await verdicts.any_release_expired(session)
    async with db() as session, session.begin():
        assert await verdicts.expire_releases(session) == [("team/app", OTHER)]
    async with db() as session:
        assert not await verdicts.any_release_expired(session)
