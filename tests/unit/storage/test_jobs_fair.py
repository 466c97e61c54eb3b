"""The fair claim on a real database (SQLite or PostgreSQL): identities take turns, the one with
the fewest jobs running goes first, repositories take turns within an identity, a waiting pull
goes first without letting a flooder starve anyone, and concurrent claimers never share a job."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, text

from storage import jobs
from storage.db import create_engine, sessionmaker, upgrade
from storage.models import Job
from storage.timeutil import now
from tests.support.database import Database

LEASE = timedelta(seconds=60)


async def queue(db: Any, identity: str, repository: str, *digests: str) -> None:
    async with db() as session, session.begin():
        for digest in digests:
            await jobs.enqueue(session, "verify", repository, digest, "pushed", identity=identity)


async def claim(db: Any, owner: str = "w") -> jobs.ClaimedJob:
    async with db() as session, session.begin():
        job = await jobs.claim(session, owner, LEASE, 3)
    assert job is not None
    return job


async def done(db: Any, job: jobs.ClaimedJob, owner: str = "w") -> None:
    async with db() as session, session.begin():
        assert await jobs.finish(session, job.id, owner)


async def run_one(db: Any) -> tuple[str, str, str]:
    """Claim and finish a job: (identity, repository, digest)."""
    job = await claim(db)
    await done(db, job)
    return job.identity, job.repository, job.digest


async def test_a_second_identity_is_served_next_however_long_the_first_ones_queue(
    db: Any,
) -> None:
    await queue(db, "flood", "flood/a", *(f"sha256:f{n}" for n in range(50)))
    await queue(db, "victim", "team/app", "sha256:v")
    order = [await run_one(db) for _ in range(4)]
    assert order[0] == ("flood", "flood/a", "sha256:f0")  # the oldest, nobody served yet
    assert order[1] == ("victim", "team/app", "sha256:v")
    assert order[2:] == [("flood", "flood/a", "sha256:f1"), ("flood", "flood/a", "sha256:f2")]


async def test_the_identity_with_fewer_jobs_running_goes_first(db: Any) -> None:
    await queue(db, "slow", "slow/a", "sha256:s1", "sha256:s2")
    await queue(db, "quick", "quick/a", "sha256:q1", "sha256:q2")
    long_running = await claim(db)
    assert long_running.identity == "slow"
    # "quick" was served more recently than "slow" after this, but "slow" still holds a worker
    assert (await run_one(db))[0] == "quick"
    assert (await run_one(db))[0] == "quick"
    await done(db, long_running)
    assert (await run_one(db))[0] == "slow"


async def test_repositories_of_one_identity_take_turns(db: Any) -> None:
    await queue(db, "ci", "team/big", *(f"sha256:b{n}" for n in range(5)))
    await queue(db, "ci", "team/small", "sha256:s")
    order = [(await run_one(db))[1] for _ in range(4)]
    assert order == ["team/big", "team/small", "team/big", "team/big"]


async def test_a_waiting_pull_goes_first(db: Any) -> None:
    await queue(db, "rescan", "lib/a", *(f"sha256:r{n}" for n in range(5)))
    await queue(db, "ci", "team/app", "sha256:c1", "sha256:c2")
    async with db() as session, session.begin():
        assert await jobs.expedite(session, "team/app", "sha256:c2")
        assert not await jobs.expedite(session, "team/app", "sha256:unknown")
    assert await run_one(db) == ("ci", "team/app", "sha256:c2")
    assert await run_one(db) == ("rescan", "lib/a", "sha256:r0")
    # waited for again, and "ci" did not have the last claim: first again
    async with db() as session, session.begin():
        await jobs.expedite(session, "team/app", "sha256:c1")
    assert await run_one(db) == ("ci", "team/app", "sha256:c1")


async def test_pulling_ones_own_flood_takes_every_other_claim_at_most(db: Any) -> None:
    flood = [f"sha256:f{n}" for n in range(20)]
    await queue(db, "flood", "flood/a", *flood)
    await queue(db, "victim", "team/app", "sha256:v")
    async with db() as session, session.begin():
        for digest in flood:
            await jobs.expedite(session, "flood/a", digest)
    order = [(await run_one(db))[0] for _ in range(3)]
    assert order == ["flood", "victim", "flood"]


async def test_concurrent_claimers_never_share_a_job(db: Any) -> None:
    for n in range(6):
        await queue(db, f"user{n}", f"repo/{n}", *(f"sha256:{n}-{k}" for k in range(5)))

    async def worker(name: str) -> list[int]:
        taken: list[int] = []
        while True:
            async with db() as session, session.begin():
                job = await jobs.claim(session, name, LEASE, 3)
            if job is None:
                return taken
            taken.append(job.id)

    results = await asyncio.gather(*(worker(f"w{n}") for n in range(5)))
    claimed = [job for taken in results for job in taken]
    assert len(claimed) == 30 and len(set(claimed)) == 30
    async with db() as session:
        assert await jobs.counts(session) == {"running": 30}


async def test_claim_stays_cheap_with_thousands_queued(db: Any) -> None:
    """Measured, not asserted (timings on a shared machine vary): printed for the record."""
    moment = now()
    rows = [
        {
            "kind": "verify",
            "repository": f"flood/r{n % 500}",
            "digest": f"sha256:{n:064x}",
            "reason": "pushed",
            "identity": f"flood{n % 3}",
            "priority": 0,
            "state": "queued",
            "attempts": 0,
            "run_after": moment,
            "created_at": moment,
            "updated_at": moment,
        }
        for n in range(5000)
    ]
    async with db() as session, session.begin():
        await session.execute(insert(Job), rows)
    await queue(db, "victim", "team/app", "sha256:v")
    started = time.perf_counter()
    claimed = [await run_one(db) for _ in range(20)]
    per_claim = (time.perf_counter() - started) / 20
    print(f"\nclaim with 5,000 queued jobs: {per_claim * 1000:.1f} ms (claim + finish)")
    assert ("victim", "team/app", "sha256:v") in claimed[:4]


async def test_jobs_queued_before_the_migration_are_unattributed_and_still_claimed(
    fresh_db: Database,
) -> None:
    engine = create_engine(fresh_db.url)
    try:
        await upgrade(engine, "0012")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO jobs (kind, repository, digest, reason, state, attempts, "
                    "run_after, created_at, updated_at) VALUES ('verify', 'old/app', "
                    "'sha256:old', 'pushed', 'queued', 0, :t, :t, :t)"
                ),
                {"t": now() - timedelta(seconds=1)},
            )
        await upgrade(engine)
        db = sessionmaker(engine)
        job = await claim(db)
        assert (job.identity, job.repository, job.digest) == (
            "gatekeeper:unattributed",
            "old/app",
            "sha256:old",
        )
    finally:
        await engine.dispose()
