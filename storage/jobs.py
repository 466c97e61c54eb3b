"""Persisted background jobs with leases: enqueue, claim, finish, retry, dead-letter.

A claim is one guarded UPDATE (``... WHERE id = ? AND <still claimable>``) whose row count says
whether this worker won, so two processes never run the same job, on SQLite (whose writers are
serialised) as on PostgreSQL, where candidates are picked with ``FOR UPDATE SKIP LOCKED`` so
replicas do not queue behind each other's locks. A worker that dies leaves its lease to expire,
and the job is claimed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Job
from storage.timeutil import now as utcnow

# Bulk UPDATEs here never touch objects loaded in the same session in a way that matters,
# and the ORM's in-Python re-evaluation cannot compare SQLite's zone-less timestamps.
NO_SYNC = {"synchronize_session": False}


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    repository: str
    digest: str
    reason: str
    attempts: int


def _claimable(moment: datetime):  # type: ignore[no-untyped-def]
    return or_(
        and_(Job.state == "queued", Job.run_after <= moment),
        and_(Job.state == "running", Job.lease_until < moment),
    )


async def enqueue(
    session: AsyncSession, kind: str, repository: str, digest: str, reason: str
) -> int | None:
    """Queue a job unless the same one is already queued (a running one may be stale, so a
    new request still queues: the verdict is recomputed from the newest inputs)."""
    existing = await session.scalar(
        select(Job.id).where(
            Job.kind == kind,
            Job.repository == repository,
            Job.digest == digest,
            Job.state == "queued",
        )
    )
    if existing is not None:
        return None
    moment = utcnow()
    job = Job(
        kind=kind,
        repository=repository,
        digest=digest,
        reason=reason,
        state="queued",
        attempts=0,
        run_after=moment,
        created_at=moment,
        updated_at=moment,
    )
    session.add(job)
    await session.flush()
    return job.id


async def claim(
    session: AsyncSession, owner: str, lease: timedelta, max_attempts: int
) -> ClaimedJob | None:
    """Take one claimable job, or None. Jobs that used up their attempts go to ``dead``."""
    moment = utcnow()
    query = select(Job).where(_claimable(moment)).order_by(Job.id).limit(8)
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    for job in (await session.scalars(query)).all():
        if job.attempts >= max_attempts:
            await _mark_dead(session, job.id, moment, "lease expired too often")
            continue
        won = await session.execute(
            update(Job)
            .execution_options(**NO_SYNC)
            .where(Job.id == job.id, _claimable(moment))
            .values(
                state="running",
                lease_owner=owner,
                lease_until=moment + lease,
                attempts=Job.attempts + 1,
                updated_at=moment,
            )
        )
        if won.rowcount == 1:  # type: ignore[attr-defined]
            return ClaimedJob(
                job.id, job.kind, job.repository, job.digest, job.reason, job.attempts + 1
            )
    return None


async def finish(session: AsyncSession, job_id: int, owner: str) -> bool:
    """Mark done; False if the lease was lost to another worker meanwhile."""
    result = await session.execute(
        update(Job)
        .execution_options(**NO_SYNC)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
        .values(state="done", lease_until=None, updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retry_or_bury(
    session: AsyncSession,
    job_id: int,
    owner: str,
    error: str,
    attempts: int,
    max_attempts: int,
    base_delay: float,
) -> str:
    """After a failed attempt: back off exponentially, or dead-letter after ``max_attempts``."""
    moment = utcnow()
    if attempts >= max_attempts:
        await _mark_dead(session, job_id, moment, error)
        return "dead"
    delay = timedelta(seconds=min(base_delay * 2 ** (attempts - 1), 3600))
    await session.execute(
        update(Job)
        .execution_options(**NO_SYNC)
        .where(Job.id == job_id, Job.lease_owner == owner)
        .values(
            state="queued",
            run_after=moment + delay,
            lease_until=None,
            last_error=error[:2000],
            updated_at=moment,
        )
    )
    return "queued"


async def _mark_dead(session: AsyncSession, job_id: int, moment: datetime, error: str) -> None:
    await session.execute(
        update(Job)
        .execution_options(**NO_SYNC)
        .where(Job.id == job_id)
        .values(state="dead", lease_until=None, last_error=error[:2000], updated_at=moment)
    )


async def extend_lease(session: AsyncSession, job_id: int, owner: str, lease: timedelta) -> bool:
    result = await session.execute(
        update(Job)
        .execution_options(**NO_SYNC)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
        .values(lease_until=utcnow() + lease)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Job.state, func.count()).group_by(Job.state))
    return {state: int(n) for state, n in rows.all()}
