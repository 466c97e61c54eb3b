"""Leased jobs on a real SQLite database: claims, lease expiry, back-off, dead letters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from storage import jobs
from storage.models import Job
from storage.timeutil import now


async def claim(db: Any, owner: str, lease: float = 60, max_attempts: int = 3) -> Any:
    async with db() as session, session.begin():
        return await jobs.claim(session, owner, timedelta(seconds=lease), max_attempts)


async def test_one_claim_per_job_and_duplicates_are_not_queued(db: Any) -> None:
    async with db() as session, session.begin():
        queued = await jobs.enqueue(session, "verify", "r", "sha256:a", "pushed", identity="paul")
        assert queued is not None
        again = await jobs.enqueue(session, "verify", "r", "sha256:a", "again", identity="ci")
        assert again is None
    first = await claim(db, "w1")
    assert first is not None and first.attempts == 1
    assert await claim(db, "w2") is None
    async with db() as session, session.begin():
        assert not await jobs.finish(session, first.id, "w2")  # not the owner
        assert await jobs.finish(session, first.id, "w1")
    async with db() as session:
        assert await jobs.counts(session) == {"done": 1}


async def test_only_a_queued_twin_keeps_a_job_from_being_queued(db: Any) -> None:
    """The check and the insert are one statement: a queued job of the same kind, repository
    and digest is the only thing that stops one; a running one may be stale, so it does not."""
    async with db() as session, session.begin():
        assert await jobs.enqueue(session, "verify", "r", "sha256:t", "pushed", identity="p")
        for kind, repository, digest in (("verify", "r", "sha256:u"), ("verify", "s", "sha256:t")):
            assert await jobs.enqueue(session, kind, repository, digest, "x", identity="p")
    running = await claim(db, "w1")
    assert running is not None
    async with db() as session, session.begin():
        again = await jobs.enqueue(
            session, "verify", running.repository, running.digest, "again", identity="ci"
        )
        assert again is not None and again != running.id
        queued = await jobs.enqueue(
            session, "verify", running.repository, running.digest, "twice", identity="ci"
        )
        assert queued is None
        assert await jobs.counts(session) == {"queued": 3, "running": 1}


async def test_an_expired_lease_is_claimed_again(db: Any) -> None:
    async with db() as session, session.begin():
        await jobs.enqueue(session, "verify", "r", "sha256:b", "pushed", identity="paul")
    first = await claim(db, "dead-worker", lease=60)
    async with db() as session, session.begin():
        await session.execute(
            update(Job)
            .execution_options(synchronize_session=False)
            .values(lease_until=now() - timedelta(seconds=1))
        )
    second = await claim(db, "w2")
    assert second is not None and second.id == first.id and second.attempts == 2
    async with db() as session, session.begin():
        assert not await jobs.finish(session, first.id, "dead-worker")


async def test_failures_back_off_then_dead_letter(db: Any) -> None:
    async with db() as session, session.begin():
        await jobs.enqueue(session, "verify", "r", "sha256:c", "pushed", identity="paul")
    job = await claim(db, "w")
    async with db() as session, session.begin():
        state = await jobs.retry_or_bury(session, job.id, "w", "boom", job.attempts, 2, 30.0)
    assert state == "queued"
    assert await claim(db, "w") is None  # backing off for 30 s
    async with db() as session, session.begin():
        await session.execute(
            update(Job)
            .execution_options(synchronize_session=False)
            .values(run_after=now() - timedelta(seconds=1))
        )
    again = await claim(db, "w")
    assert again is not None and again.attempts == 2
    async with db() as session, session.begin():
        state = await jobs.retry_or_bury(session, again.id, "w", "boom", again.attempts, 2, 30.0)
    assert state == "dead"
    async with db() as session:
        assert await jobs.counts(session) == {"dead": 1}


async def test_a_clean_stop_hands_running_jobs_back_at_once(db: Any) -> None:
    """A stopping replica's jobs are claimable by another now, not when the lease ends, and
    the interrupted attempt is not counted; other owners' jobs are left alone."""
    async with db() as session, session.begin():
        for digest in ("sha256:d", "sha256:e"):
            await jobs.enqueue(session, "verify", "r", digest, "pushed", identity="paul")
    stopping = await claim(db, "stopping", lease=3600)
    staying = await claim(db, "staying", lease=3600)
    assert stopping is not None and staying is not None
    async with db() as session, session.begin():
        assert await jobs.hand_back(session, "stopping") == 1
    taken = await claim(db, "other", lease=3600)
    assert taken is not None and taken.id == stopping.id
    assert taken.attempts == 1  # the handed-back attempt did not count
    assert await claim(db, "other") is None  # the staying replica's job is still its own
    async with db() as session, session.begin():
        assert await jobs.finish(session, staying.id, "staying")
        assert not await jobs.finish(session, stopping.id, "stopping")


async def _candidates(db: Any) -> list[jobs.ClaimedJob]:
    async with db() as session:
        return await jobs.first_candidates(session)


async def _claim_among(db: Any, candidates: list[jobs.ClaimedJob], owner: str) -> Any:
    async with db() as session, session.begin():
        return await jobs.claim_among(session, candidates, owner, timedelta(seconds=60), 3)


async def test_candidates_read_before_the_claim_are_checked_again_by_it(db: Any) -> None:
    """A worker reads what to take outside its write transaction; what another worker took
    meanwhile is skipped, and when all of them were taken the claim looks again itself."""
    async with db() as session, session.begin():
        for digest in ("sha256:1", "sha256:2"):
            await jobs.enqueue(session, "verify", "r", digest, "pushed", identity="paul")
    read = await _candidates(db)
    assert [c.digest for c in read] == ["sha256:1", "sha256:2"]
    first = await claim(db, "w1")  # another worker, in between
    assert first.digest == "sha256:1"
    second = await _claim_among(db, read, "w2")
    assert second is not None and (second.digest, second.attempts) == ("sha256:2", 1)
    async with db() as session, session.begin():
        await jobs.enqueue(session, "verify", "other", "sha256:3", "pushed", identity="ann")
    assert await _claim_among(db, read, "w3") is not None  # both read were taken: looked again
    assert await _claim_among(db, read, "w4") is None


async def test_a_candidates_attempts_are_what_its_claim_counted(db: Any) -> None:
    """Read while its first lease ran, claimed after that lease expired and another worker
    took it and lost it too: the claim says the attempt it really is, and a candidate read
    before its last attempt is not claimed once more (the job is dead instead)."""
    async with db() as session, session.begin():
        await jobs.enqueue(session, "verify", "r", "sha256:4", "pushed", identity="paul")
    read = await _candidates(db)
    assert [c.attempts for c in read] == [0]
    expire = update(Job).execution_options(synchronize_session=False)
    await claim(db, "w1")
    async with db() as session, session.begin():
        await session.execute(expire.values(lease_until=now() - timedelta(seconds=1)))
    taken = await _claim_among(db, read, "w2")
    assert taken is not None and taken.attempts == 2
    async with db() as session, session.begin():
        await session.execute(expire.values(lease_until=now() - timedelta(seconds=1)))
    stale = [taken]  # attempts 2 as read; the third claim is the last one allowed
    third = await _claim_among(db, stale, "w3")
    assert third is not None and third.attempts == 3
    async with db() as session, session.begin():
        await session.execute(expire.values(lease_until=now() - timedelta(seconds=1)))
    # Read as it was before the third claim: its attempts are used up all the same.
    assert await _claim_among(db, stale, "w4") is None
    async with db() as session:
        assert await jobs.counts(session) == {"dead": 1}
