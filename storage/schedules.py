"""Persisted state of the cluster-wide scheduler: re-verification runs and their cursor, due
times of periodic tasks, and advisory mirror validators.

A run walks the verdicts in key order ``(repository, digest)``. Each batch queues its jobs and
moves the cursor in one transaction, guarded by the cursor it started from: a crash loses
nothing (the batch is all there or not at all) and two writers can never both queue the same
batch (the second one's guarded UPDATE matches no row and its transaction is rolled back).
When a run should start, whether its pace allows another batch, is decided in
``services/scheduler.py``; this module only stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import jobs
from storage.models import AdvisoryMirror, Job, RescanRun, SchedulerMark, Verdict
from storage.timeutil import utc

NO_SYNC = {"synchronize_session": False}


class RunActive(Exception):
    """Another run is still in progress; at most one runs cluster-wide."""


@dataclass(frozen=True)
class RunView:
    """One run as callers see it."""

    id: int
    trigger: str
    """``schedule`` or ``manual``."""
    requested_by: str
    pattern: str | None
    state: str
    """``running``, ``done`` or ``cancelled``."""
    total: int
    """Images that matched when the run started."""
    queued: int
    """Images queued so far (may pass ``total`` when images are pushed during the run)."""
    spread_seconds: float
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    note: str | None
    cursor: tuple[str, str] | None
    """The last image queued; the run goes on after it."""

    @property
    def reason(self) -> str:
        """The reason every job of this run carries; it ties jobs back to their run."""
        return run_reason(self.id)


def run_reason(run_id: int) -> str:
    return f"re-verification run {run_id}"


def _view(row: RescanRun) -> RunView:
    cursor = None
    if row.cursor_repository is not None and row.cursor_digest is not None:
        cursor = (row.cursor_repository, row.cursor_digest)
    return RunView(
        id=row.id,
        trigger=row.trigger,
        requested_by=row.requested_by,
        pattern=row.pattern,
        state=row.state,
        total=row.total,
        queued=row.queued,
        spread_seconds=row.spread_seconds,
        created_at=utc(row.created_at) or row.created_at,
        updated_at=utc(row.updated_at) or row.updated_at,
        finished_at=utc(row.finished_at),
        note=row.note,
        cursor=cursor,
    )


def _matching(pattern: str | None) -> ColumnElement[bool] | None:
    """``*`` and ``?`` globs as SQL LIKE (repository names never hold ``%``, but ``_`` they do,
    so LIKE's own wildcards are escaped first)."""
    if pattern is None:
        return None
    if "*" not in pattern and "?" not in pattern:
        return Verdict.repository == pattern
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Verdict.repository.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")


async def count_images(session: AsyncSession, pattern: str | None) -> int:
    query = select(func.count()).select_from(Verdict)
    clause = _matching(pattern)
    if clause is not None:
        query = query.where(clause)
    return int(await session.scalar(query) or 0)


async def start_run(
    session: AsyncSession,
    *,
    trigger: str,
    requested_by: str,
    pattern: str | None,
    spread_seconds: float,
    moment: datetime,
) -> RunView:
    """Record a new run; raises :class:`RunActive` while another one runs."""
    current = await active_run(session)
    if current is not None:
        raise RunActive(
            f"re-verification run {current.id} is still running ({current.queued} of "
            f"{current.total} queued); wait for it or cancel it first (gatekeeper rescan --cancel)"
        )
    row = RescanRun(
        trigger=trigger,
        requested_by=requested_by[:255],
        pattern=pattern,
        state="running",
        total=await count_images(session, pattern),
        queued=0,
        spread_seconds=spread_seconds,
        created_at=moment,
        updated_at=moment,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:  # another replica started one between our check and insert
        raise RunActive("another re-verification run was started at the same moment") from exc
    return _view(row)


async def active_run(session: AsyncSession) -> RunView | None:
    row = await session.scalar(select(RescanRun).where(RescanRun.state == "running"))
    return _view(row) if row else None


async def latest_run(session: AsyncSession) -> RunView | None:
    row = await session.scalar(select(RescanRun).order_by(RescanRun.id.desc()).limit(1))
    return _view(row) if row else None


async def get_run(session: AsyncSession, run_id: int) -> RunView | None:
    row = await session.get(RescanRun, run_id)
    return _view(row) if row else None


async def next_images(session: AsyncSession, run: RunView, limit: int) -> list[tuple[str, str]]:
    """The next ``limit`` images of ``run`` after its cursor, in key order."""
    query = select(Verdict.repository, Verdict.digest)
    clause = _matching(run.pattern)
    if clause is not None:
        query = query.where(clause)
    if run.cursor is not None:
        query = query.where(tuple_(Verdict.repository, Verdict.digest) > run.cursor)
    query = query.order_by(Verdict.repository, Verdict.digest).limit(limit)
    return [(r, d) for r, d in (await session.execute(query)).all()]


async def queue_batch(
    session: AsyncSession, run: RunView, limit: int, moment: datetime
) -> tuple[int, bool] | None:
    """Queue the next batch of ``run`` and move its cursor: (images queued, run finished).

    None when the run moved on meanwhile (cancelled, or its cursor changed under us): the
    caller must roll back, so the jobs queued here are undone with it.
    """
    batch = await next_images(session, run, limit)
    for repository, digest in batch:
        await jobs.enqueue(session, "verify", repository, digest, run.reason, identity=jobs.RESCAN)
    finished = len(batch) < limit
    values: dict[str, object] = {"queued": RescanRun.queued + len(batch), "updated_at": moment}
    if batch:
        values["cursor_repository"], values["cursor_digest"] = batch[-1]
    if finished:
        values.update(state="done", finished_at=moment)
    guard = [RescanRun.id == run.id, RescanRun.state == "running"]
    if run.cursor is None:
        guard.append(RescanRun.cursor_repository.is_(None))
    else:
        guard += [
            RescanRun.cursor_repository == run.cursor[0],
            RescanRun.cursor_digest == run.cursor[1],
        ]
    result = await session.execute(
        update(RescanRun).execution_options(**NO_SYNC).where(*guard).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return len(batch), finished


async def cancel_run(
    session: AsyncSession, run_id: int, by: str, moment: datetime
) -> tuple[RunView, int] | None:
    """Stop a running run and withdraw its jobs that have not started: (run, jobs withdrawn).
    Verdicts are untouched (last known good). None if the run is not running."""
    result = await session.execute(
        update(RescanRun)
        .execution_options(**NO_SYNC)
        .where(RescanRun.id == run_id, RescanRun.state == "running")
        .values(state="cancelled", finished_at=moment, updated_at=moment, note=f"cancelled by {by}")
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    withdrawn = await session.execute(
        update(Job)
        .execution_options(**NO_SYNC)
        .where(Job.reason == run_reason(run_id), Job.state == "queued")
        .values(state="cancelled", updated_at=moment, last_error=f"run cancelled by {by}")
    )
    run = await get_run(session, run_id)
    assert run is not None
    return run, int(withdrawn.rowcount)  # type: ignore[attr-defined]


async def job_states(session: AsyncSession, run_id: int) -> dict[str, int]:
    """How many of the run's jobs are in each state (``queued``, ``running``, ``done``...).
    Images whose job was already queued by something else are verified by that job and do
    not appear here."""
    rows = await session.execute(
        select(Job.state, func.count()).where(Job.reason == run_reason(run_id)).group_by(Job.state)
    )
    return {state: int(n) for state, n in rows.all()}


async def queued_jobs(session: AsyncSession) -> int:
    """Jobs waiting in the queue, for back-pressure."""
    return int(await session.scalar(select(func.count()).where(Job.state == "queued")) or 0)


# -- due times ---------------------------------------------------------------------------------


async def due_at(session: AsyncSession, name: str) -> datetime | None:
    row = await session.get(SchedulerMark, name)
    return utc(row.due_at) if row else None


async def set_due(session: AsyncSession, name: str, moment: datetime) -> None:
    await session.merge(SchedulerMark(name=name, due_at=moment))


# -- mirror validators -------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorView:
    """What the last sync of one URL left behind."""

    display_url: str
    etag: str | None
    last_modified: str | None
    checked_at: datetime | None
    imported_at: datetime | None
    data_version: int | None
    last_error: str | None
    failures: int


async def mirror(session: AsyncSession, url_key: str) -> MirrorView | None:
    row = await session.get(AdvisoryMirror, url_key)
    if row is None:
        return None
    return MirrorView(
        row.display_url,
        row.etag,
        row.last_modified,
        utc(row.checked_at),
        utc(row.imported_at),
        row.data_version,
        row.last_error,
        row.failures or 0,
    )


async def record_mirror(
    session: AsyncSession,
    url_key: str,
    display_url: str,
    moment: datetime,
    *,
    imported: tuple[str | None, str | None, int] | None = None,
    error: str | None = None,
) -> None:
    """Note a check of one URL: ``imported`` = (etag, last_modified, data version) after a
    download was imported; ``error`` after a failure (validators stay, so the next check is
    still conditional on the data actually imported); neither for a 304."""
    row = await session.get(AdvisoryMirror, url_key, with_for_update=True)
    if row is None:
        row = AdvisoryMirror(url_key=url_key, display_url=display_url, failures=0)
        session.add(row)
    row.display_url = display_url
    row.checked_at = moment
    if error is not None:
        row.last_error = error[:2000]
        row.failures = (row.failures or 0) + 1
        return
    row.last_error = None
    row.failures = 0
    if imported is not None:
        row.etag, row.last_modified, row.data_version = imported
        row.imported_at = moment
