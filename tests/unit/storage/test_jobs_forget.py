"""Finished jobs are forgotten once past their keeping, in bounded batches, oldest first; a job
still queued or running never is, however old; old turns of the fair order go too."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from storage import jobs
from storage.models import Job, JobTurn
from storage.timeutil import now

OLD = now() - timedelta(days=40)


async def _job(db: Any, digest: str, state: str, *, finished: Any = OLD) -> int:
    async with db() as session, session.begin():
        job_id = await jobs.enqueue(session, "verify", "r", digest, "pushed", identity="paul")
        assert job_id is not None
        await session.execute(
            update(Job)
            .execution_options(**jobs.NO_SYNC)
            .where(Job.id == job_id)
            .values(state=state, updated_at=finished, created_at=finished)
        )
    return job_id


async def _left(db: Any) -> dict[str, list[str]]:
    async with db() as session:
        rows = (await session.execute(select(Job.state, Job.digest).order_by(Job.id))).all()
    found: dict[str, list[str]] = {}
    for state, digest in rows:
        found.setdefault(state, []).append(digest)
    return found


async def test_only_finished_jobs_past_the_cutoff_are_forgotten(db: Any) -> None:
    for state in ("done", "dead", "cancelled", "queued", "running"):
        await _job(db, f"sha256:old-{state}", state)
    await _job(db, "sha256:new-done", "done", finished=now() - timedelta(days=2))
    async with db() as session, session.begin():
        forgotten = await jobs.forget_finished(session, now() - timedelta(days=30))
    assert forgotten == 3
    assert await _left(db) == {
        "queued": ["sha256:old-queued"],
        "running": ["sha256:old-running"],
        "done": ["sha256:new-done"],
    }


async def test_a_backlog_goes_in_batches_oldest_first(db: Any) -> None:
    total = jobs.PRUNE_BATCH + 5
    async with db() as session, session.begin():
        for n in range(total):
            await jobs.enqueue(session, "verify", "r", f"sha256:{n:05d}", "p", identity="paul")
        await session.execute(
            update(Job).execution_options(**jobs.NO_SYNC).values(state="done", updated_at=OLD)
        )
    cutoff = now() - timedelta(days=30)
    async with db() as session, session.begin():
        assert await jobs.forget_finished(session, cutoff) == jobs.PRUNE_BATCH
    assert await _left(db) == {"done": [f"sha256:{n:05d}" for n in range(jobs.PRUNE_BATCH, total)]}
    async with db() as session, session.begin():
        assert await jobs.forget_finished(session, cutoff) == 5
        assert await jobs.forget_finished(session, cutoff) == 0
    assert await _left(db) == {}


async def test_turns_served_long_ago_are_forgotten(db: Any) -> None:
    async with db() as session, session.begin():
        for identity, served in (("old", now() - timedelta(days=3)), ("recent", now())):
            session.add(JobTurn(identity=identity, repository="", served_at=served))
    async with db() as session, session.begin():
        await jobs.forget_finished(session, now() - timedelta(days=30))
    async with db() as session:
        kept = (await session.scalars(select(JobTurn.identity))).all()
    assert kept == ["recent"]
