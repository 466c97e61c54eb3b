"""Persisted background jobs with leases: enqueue, claim fairly, finish, retry, dead-letter.

A claim is one guarded UPDATE (``... WHERE id = ? AND <still claimable>``) whose row count says
whether this worker won, so two processes never run the same job, on SQLite (whose writers are
serialised) as on PostgreSQL, where candidates are picked with ``FOR UPDATE SKIP LOCKED`` so
replicas do not queue behind each other's locks. Leases are short and renewed while the job
runs: a worker that dies leaves its lease to expire within seconds, and the job is claimed
again; a process that stops cleanly hands its jobs back (:func:`hand_back`) at once.

The queue is fair, not first-in first-out: every job names the identity that caused it, and
a claim picks among the (identity, repository) groups with claimable work (see
:func:`claim`), so one identity flooding the queue delays another's image by about one job,
not by its whole backlog.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.db import upsert
from storage.models import Job, JobTurn, Verdict
from storage.prepared import deleted, dialect_of, table
from storage.timeutil import now as utcnow
from storage.timeutil import utc
from verifiers.lifecycle import State

# Bulk UPDATEs here never touch objects loaded in the same session in a way that matters,
# and the ORM's in-Python re-evaluation cannot compare SQLite's zone-less timestamps.
NO_SYNC = {"synchronize_session": False}

# Who causes jobs besides the pushing identity. Names with a colon cannot be users' (HTTP
# Basic credentials, through which every identity logs in, cannot carry one in the name).
FIRST_PULL = "gatekeeper:first-pull"
"""A pull of an image the gatekeeper never saw pushed (it came around the gatekeeper)."""
RESCAN = "gatekeeper:rescan"
"""A periodic or manual re-verification run (``gatekeeper rescan``)."""
ADVISORY_IMPORT = "gatekeeper:advisory-import"
"""Images an advisory import could not re-evaluate from stored data."""
POLICY_CHANGE = "gatekeeper:policy-change"
"""Images a changed policy could not re-decide from stored data."""
ENROLL = "gatekeeper:enroll"
"""``gatekeeper enroll``: the images already in the registry."""
PREFETCH = "gatekeeper:prefetch"
"""The scheduler keeping the settings' ``[prefetch] images`` warm."""
DEPENDENCY = "gatekeeper:dependency"
"""Manifests decided again because what they depend on changed (an index's platform image, an
artifact's subject), or found present while another was verified."""
SHARED_CONTENT = "gatekeeper:shared-content"
"""Manifests decided again because a blob they list was found to carry findings elsewhere."""


def admin(name: str) -> str:
    """An admin's request (``quarantine rescan``), attributed to that admin."""
    return f"admin:{name}"


WHOLE = ""
"""``JobTurn.repository`` of the row for an identity as a whole."""
GROUPS = 4
"""(identity, repository) groups a claim tries, in turn order, before giving up: more than
one, since replicas may hold every claimable job of the first under ``SKIP LOCKED``."""


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    repository: str
    digest: str
    reason: str
    attempts: int
    identity: str


def _claimable(moment: datetime):  # type: ignore[no-untyped-def]
    return or_(
        and_(Job.state == "queued", Job.run_after <= moment),
        and_(Job.state == "running", Job.lease_until < moment),
    )


_JOBS = table(Job)
_QUEUED = select(_JOBS.c.id).where(
    _JOBS.c.kind == bindparam("job_kind"),
    _JOBS.c.repository == bindparam("in_repository"),
    _JOBS.c.digest == bindparam("image"),
    _JOBS.c.state == "queued",
)
_ENQUEUE = insert(_JOBS).returning(_JOBS.c.id)
"""Built once (``storage.prepared``): every push queues its verification in its write
transaction."""


def _bound(name: str, column: str) -> Any:
    return bindparam(name, type_=_JOBS.c[column].type)


_ENQUEUE_UNLESS_QUEUED = (
    insert(_JOBS)
    .from_select(
        [
            *("kind", "repository", "digest", "reason", "identity", "priority", "state"),
            *("attempts", "run_after", "created_at", "updated_at"),
        ],
        select(
            _bound("job_kind", "kind"),
            _bound("in_repository", "repository"),
            _bound("image", "digest"),
            _bound("new_reason", "reason"),
            _bound("new_identity", "identity"),
            _bound("new_priority", "priority"),
            _bound("new_state", "state"),
            _bound("new_attempts", "attempts"),
            _bound("moment", "run_after"),
            _bound("moment", "created_at"),
            _bound("moment", "updated_at"),
        ).where(~exists(_QUEUED)),
    )
    .returning(_JOBS.c.id)
)
"""A queued job unless the same one is queued already: the check and the insert in one
statement (they were two round trips of every push's write transaction)."""


async def enqueue(
    session: AsyncSession,
    kind: str,
    repository: str,
    digest: str,
    reason: str,
    *,
    identity: str,
) -> int | None:
    """Queue a job unless the same one is already queued (a running one may be stale, so a
    new request still queues: the verdict is recomputed from the newest inputs). ``identity``
    caused it: the pusher, or one of the named causes above; the queued job keeps the
    identity that queued it first."""
    moment = utcnow()
    queued = await session.scalar(
        _ENQUEUE_UNLESS_QUEUED,
        {
            "job_kind": kind,
            "in_repository": repository,
            "image": digest,
            "new_reason": reason,
            "new_identity": identity[:255],
            "new_priority": 0,
            "new_state": "queued",
            "new_attempts": 0,
            "moment": moment,
        },
    )
    return None if queued is None else int(queued)


async def _insert(session: AsyncSession, **row: Any) -> int:
    """A new job row (every column but ``last_error`` given, so the statement is always the
    same one, :data:`_ENQUEUE`); its id."""
    return int(await session.scalar(_ENQUEUE, row))


async def enqueue_claimed(
    session: AsyncSession,
    kind: str,
    repository: str,
    digest: str,
    reason: str,
    *,
    identity: str,
    owner: str,
    lease: timedelta,
) -> ClaimedJob:
    """A job born claimed by ``owner`` (the serving process verifying a first pull itself):
    no worker takes it while ``owner`` renews its lease, and if ``owner`` dies the lease runs
    out and any worker claims it as it would a crashed worker's job (its first attempt spent)."""
    moment = utcnow()
    job_id = await _insert(
        session,
        kind=kind,
        repository=repository,
        digest=digest,
        reason=reason,
        identity=identity[:255],
        priority=1,
        state="running",
        attempts=1,
        run_after=moment,
        lease_owner=owner,
        lease_until=moment + lease,
        created_at=moment,
        updated_at=moment,
    )
    return ClaimedJob(job_id, kind, repository, digest, reason, 1, identity[:255])


async def active(session: AsyncSession, repository: str, digest: str) -> bool:
    """A verification of this image is queued or running."""
    found = await session.scalar(
        select(Job.id)
        .where(
            Job.repository == repository,
            Job.digest == digest,
            Job.state.in_(("queued", "running")),
        )
        .limit(1)
    )
    return found is not None


async def expedite(session: AsyncSession, repository: str, digest: str) -> bool:
    """A pull waits for this image's verdict: its queued job goes first (see :func:`claim`).
    False when none is queued (already running, or done)."""
    result = await session.execute(
        update(Job)
        .execution_options(**NO_SYNC)
        .where(Job.repository == repository, Job.digest == digest, Job.state == "queued")
        .values(priority=1)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def claim(
    session: AsyncSession, owner: str, lease: timedelta, max_attempts: int
) -> ClaimedJob | None:
    """Take one claimable job, or None. Jobs that used up their attempts go to ``dead``.

    Which job, among the groups of claimable jobs by (identity, repository):

    1. a job a pull waits for (:func:`expedite`), unless its identity had the last claim: a
       waiting pull goes first, yet an identity that pulls its own flood still takes only
       every other claim while anyone else waits;
    2. the identity with the fewest jobs running (its share of the workers, cluster-wide);
    3. the identity served least recently (never served first);
    4. within it, a job a pull waits for, then the repository served least recently;
    5. within that, the oldest job.
    """
    moment = utcnow()
    for identity, repository in await _turn_order(session, moment):
        found = await _claimable_in(session, identity, repository, moment, lock=True)
        job = await _take(session, found, owner, lease, max_attempts, moment)
        if job is not None:
            await _served(session, job, moment)
            return job
    return None


async def first_candidates(session: AsyncSession) -> list[ClaimedJob]:
    """A read: the claimable jobs of the group :func:`claim` would try first (as they stand
    now, their ``attempts`` not yet counted up), or none. A worker reads these before its
    write transaction, which then only takes one (:func:`claim_among`): on SQLite the fair
    order's query, the claim's costliest statement, then holds no one's write turn."""
    moment = utcnow()
    order = await _turn_order(session, moment)
    if not order:
        return []
    identity, repository = order[0]
    return await _claimable_in(session, identity, repository, moment, lock=False)


async def claim_among(
    session: AsyncSession,
    candidates: list[ClaimedJob],
    owner: str,
    lease: timedelta,
    max_attempts: int,
) -> ClaimedJob | None:
    """Take the first of ``candidates`` (read by :func:`first_candidates`) still claimable, as
    :func:`claim` would; when another worker took them all meanwhile, :func:`claim` itself."""
    moment = utcnow()
    job = await _take(session, candidates, owner, lease, max_attempts, moment)
    if job is None:
        return await claim(session, owner, lease, max_attempts)
    await _served(session, job, moment)
    return job


async def _served(session: AsyncSession, job: ClaimedJob, moment: datetime) -> None:
    """The job's identity, and its repository, had their turn now."""
    for served in (WHOLE, job.repository):
        await upsert(
            session,
            JobTurn,
            ["identity", "repository"],
            identity=job.identity,
            repository=served,
            served_at=moment,
        )


async def _turn_order(session: AsyncSession, moment: datetime) -> list[tuple[str, str]]:
    """The first :data:`GROUPS` (identity, repository) groups with claimable jobs, in the
    order of :func:`claim`. Its cost grows with the queued jobs (an index-only scan: a few
    milliseconds for 20,000 on SQLite), not with the jobs done."""
    # The two halves of ``_claimable`` apart: queued jobs (the many) are then grouped from
    # ``ix_jobs_fair`` alone, without reading a row; expired leases are few.
    queued = and_(Job.state == "queued", Job.run_after <= moment)
    expired = and_(Job.state == "running", Job.lease_until < moment)
    groups = union_all(
        *(
            select(
                Job.identity,
                Job.repository,
                func.max(Job.priority).label("priority"),
                func.min(Job.id).label("oldest"),
            )
            .where(half)
            .group_by(Job.identity, Job.repository)
            for half in (queued, expired)
        )
    ).subquery()
    running = (
        select(Job.identity, func.count().label("jobs"))
        .where(Job.state == "running", Job.lease_until >= moment)
        .group_by(Job.identity)
        .subquery()
    )
    latest = (
        select(JobTurn.identity)
        .where(JobTurn.repository == WHOLE)
        .order_by(JobTurn.served_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    whole, own = aliased(JobTurn), aliased(JobTurn)
    waited_for = and_(groups.c.priority > 0, groups.c.identity != func.coalesce(latest, ""))
    query = (
        select(groups.c.identity, groups.c.repository)
        .outerjoin(running, running.c.identity == groups.c.identity)
        .outerjoin(whole, and_(whole.identity == groups.c.identity, whole.repository == WHOLE))
        .outerjoin(
            own, and_(own.identity == groups.c.identity, own.repository == groups.c.repository)
        )
        .order_by(
            case((waited_for, 0), else_=1),
            func.coalesce(running.c.jobs, 0),
            whole.served_at.is_not(None),
            whole.served_at,
            groups.c.priority.desc(),
            own.served_at.is_not(None),
            own.served_at,
            groups.c.oldest,
        )
        .limit(GROUPS)
    )
    found = [(identity, repository) for identity, repository in await session.execute(query)]
    return list(dict.fromkeys(found))  # a group may have both queued jobs and expired leases


async def _claimable_in(
    session: AsyncSession, identity: str, repository: str, moment: datetime, *, lock: bool
) -> list[ClaimedJob]:
    """The first claimable jobs of one group (waited for first, then oldest). ``lock``: on
    PostgreSQL, skipping those another replica's transaction holds."""
    query = (
        select(Job.id, Job.kind, Job.repository, Job.digest, Job.reason, Job.attempts)
        .where(_claimable(moment), Job.identity == identity, Job.repository == repository)
        .order_by(Job.priority.desc(), Job.id)
        .limit(8)
    )
    if lock and dialect_of(session) == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return [
        ClaimedJob(job_id, kind, repo, digest, reason, attempts, identity)
        for job_id, kind, repo, digest, reason, attempts in await session.execute(query)
    ]


async def _take(
    session: AsyncSession,
    found: list[ClaimedJob],
    owner: str,
    lease: timedelta,
    max_attempts: int,
    moment: datetime,
) -> ClaimedJob | None:
    """Claim the first of ``found`` that is still claimable, or None when other workers hold
    them all. Each is re-checked by the statement that claims it (``found`` may have been read
    before this transaction), and its attempts are what that statement counted."""
    for job in found:
        if job.attempts >= max_attempts:
            await _mark_dead(session, job.id, moment, "lease expired too often", _claimable(moment))
            continue
        won = await session.scalar(
            update(Job)
            .execution_options(**NO_SYNC)
            # Still claimable, and not out of attempts meanwhile (``found`` may be stale).
            .where(Job.id == job.id, _claimable(moment), Job.attempts < max_attempts)
            .values(
                state="running",
                lease_owner=owner,
                lease_until=moment + lease,
                attempts=Job.attempts + 1,
                updated_at=moment,
            )
            .returning(Job.attempts)
        )
        if won is not None:
            return replace(job, attempts=int(won))
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


async def _mark_dead(
    session: AsyncSession, job_id: int, moment: datetime, error: str, *also: Any
) -> None:
    """``also``: conditions the job must still meet (a claim's: still claimable)."""
    await session.execute(
        update(Job)
        .execution_options(**NO_SYNC)
        .where(Job.id == job_id, *also)
        .values(state="dead", lease_until=None, last_error=error[:2000], updated_at=moment)
    )


async def hand_back(session: AsyncSession, owner: str) -> int:
    """A clean stop: ``owner``'s running jobs are queued again at once, for any replica to
    claim now instead of after their leases run out, and the interrupted attempt does not
    count against ``max_attempts``. Returns how many."""
    moment = utcnow()
    result = await session.execute(
        update(Job)
        .execution_options(**NO_SYNC)
        .where(Job.lease_owner == owner, Job.state == "running")
        .values(
            state="queued",
            lease_owner=None,
            lease_until=None,
            run_after=moment,
            attempts=case((Job.attempts > 0, Job.attempts - 1), else_=0),
            updated_at=moment,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def extend_lease(session: AsyncSession, job_id: int, owner: str, lease: timedelta) -> bool:
    result = await session.execute(
        update(Job)
        .execution_options(**NO_SYNC)
        .where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
        .values(lease_until=utcnow() + lease)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Abandoned:
    """An image still ``pending`` whose latest verification job was dead-lettered: nothing
    will decide it unless something is done about it."""

    repository: str
    digest: str
    error: str
    """The dead job's last error (why its attempts failed)."""
    attempts: int


async def abandoned(
    session: AsyncSession, *, limit: int = 100, image: tuple[str, str] | None = None
) -> list[Abandoned]:
    """Pending verdicts whose latest ``verify`` job is dead (of one ``image`` if given). Read
    from the dead jobs (``ix_jobs_claim``; few unless something is wrong), each checked
    against its verdict by primary key and against any later job of the same image."""
    later = aliased(Job)
    newer = exists().where(
        later.kind == Job.kind,
        later.repository == Job.repository,
        later.digest == Job.digest,
        later.id > Job.id,
    )
    query = (
        select(Job.repository, Job.digest, Job.last_error, Job.attempts)
        .join(Verdict, and_(Verdict.repository == Job.repository, Verdict.digest == Job.digest))
        .where(Job.state == "dead", Job.kind == "verify", Verdict.state == State.PENDING, ~newer)
        .order_by(Job.id)
        .limit(limit)
    )
    if image is not None:
        query = query.where(Job.repository == image[0], Job.digest == image[1])
    rows = await session.execute(query)
    return [
        Abandoned(repository, digest, error or "no error recorded", int(attempts))
        for repository, digest, error, attempts in rows.all()
    ]


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Job.state, func.count()).group_by(Job.state))
    return {state: int(n) for state, n in rows.all()}


@dataclass(frozen=True)
class Progress:
    """Where the latest verification of one image stands (for a pull told to come back)."""

    state: str
    """``queued``, ``running``, ``done`` or ``dead``."""
    since: datetime
    """When it was queued (``queued``) or claimed (``running``)."""
    ahead: int
    """Queued verifications older than it (``queued`` only): roughly what a worker takes
    first, though the fair claim may reorder them."""


async def progress(session: AsyncSession, repository: str, digest: str) -> Progress | None:
    """The latest ``verify`` job of the image (``ix_jobs_image``), or None."""
    row = (
        await session.execute(
            select(Job.id, Job.state, Job.created_at, Job.updated_at)
            .where(Job.repository == repository, Job.digest == digest, Job.kind == "verify")
            .order_by(Job.id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    job_id, state, created_at, updated_at = row
    ahead = 0
    if state == "queued":
        ahead = int(
            await session.scalar(select(func.count()).where(Job.state == "queued", Job.id < job_id))
            or 0
        )
    since = updated_at if state == "running" else created_at
    return Progress(str(state), utc(since) or utcnow(), ahead)


# -- forgetting finished jobs ------------------------------------------------------------------

FINISHED = ("done", "dead", "cancelled")
"""The states a job never leaves."""
PRUNE_BATCH = 1000
"""Finished jobs one transaction forgets: a short write turn, many calls to catch up."""
TURNS_KEPT = timedelta(days=1)
"""How long an identity's (or repository's) last turn is remembered. Forgotten, it counts as
never served, which the fair order treats as served longest ago: the same place."""

_FORGET_FINISHED = delete(_JOBS).where(
    _JOBS.c.id.in_(
        select(_JOBS.c.id)
        .where(_JOBS.c.state.in_(FINISHED), _JOBS.c.updated_at < bindparam("finished_before"))
        .order_by(_JOBS.c.id)
        .limit(PRUNE_BATCH)
        # Rows another replica is forgetting are left to it (PostgreSQL; SQLite ignores it).
        .with_for_update(skip_locked=True)
    )
)
_TURNS = table(JobTurn)
_FORGET_TURNS = delete(_TURNS).where(_TURNS.c.served_at < bindparam("served_before"))


async def forget_finished(session: AsyncSession, before: datetime) -> int:
    """Delete up to :data:`PRUNE_BATCH` jobs finished (done, dead-lettered, cancelled) before
    ``before``, oldest first, and the turns served more than :data:`TURNS_KEPT` ago: the queue's
    tables stay bounded however many images are pushed. Jobs still queued or running are never
    touched, however old. Returns the jobs deleted (a full batch: call again)."""
    forgotten = await session.execute(_FORGET_FINISHED, {"finished_before": before})
    await session.execute(_FORGET_TURNS, {"served_before": utcnow() - TURNS_KEPT})
    return deleted(forgotten)
