"""The cluster-wide scheduler: periodic full re-verification and advisory mirror sync.

Every replica runs this loop, but each tick does work only under the cluster-wide lock
(``storage/locks.py``), so a scheduled run starts once and each batch is queued once however
many replicas share the database. A tick:

1. starts the scheduled run when it is due (``[rescan] interval``; off: nothing starts);
2. queues the next batch of the running run, paced so the run spreads over its window, and
   only while the job queue has room (back-pressure);
3. starts the advisory mirror sync when that is due (``[advisories] sync_interval``), as a
   task of its own that the tick does not wait for: a download may take up to
   ``download_deadline``, and the runs and batches of the next ticks must not wait that long.
   The sync holds a cluster-wide lock of its own (``advisory-sync``) while it runs, so it
   happens once however many replicas (and ``gatekeeper advisories sync``) want it;
4. starts the warm-up of the ``[prefetch] images`` when it is due (``[prefetch] interval``, at
   once on the first tick of a deployment), also as a task of its own: it resolves each tag
   through the registry and queues a verification of each image (``proxy.prefetch``). Its next
   due time is set when it starts, under the tick's lock, so it runs once cluster-wide; a
   replica that dies during one leaves the rest to the next interval.

Runs are persisted with a cursor (``storage/schedules.py``): after a restart or a crash the
next tick, on whichever replica holds the lock, continues where the last committed batch ended.
Verification itself is left to the ordinary job workers (``services/verification.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.settings import Settings
from services.events import EventBus
from storage import schedules
from storage.advisories import ImportResult
from storage.db import DATABASE_ERRORS
from storage.locks import ClusterLock, cluster_lock
from storage.schedules import RunView
from storage.timeutil import now as utcnow
from storage.writer import transact

if TYPE_CHECKING:
    from services.mirror import MirrorSync

log = logging.getLogger("gatekeeper.scheduler")


class SchedulerMetrics(Protocol):
    """The two counters the scheduler moves (``proxy.metrics.Metrics`` has them); a protocol,
    so that services never import the HTTP side."""

    @property
    def advisory_syncs(self) -> Counter: ...

    @property
    def rescan_queued(self) -> Counter: ...


RESCAN = "rescan"
SYNC = "advisory-sync"
PREFETCH = "prefetch"
STOP_GRACE = 5.0
"""Seconds a stop waits for the tick in progress before cancelling it."""
_PATTERN = re.compile(r"[a-z0-9._/*?-]{1,255}")


class _Moved(Exception):
    """The run changed under this tick (cancelled, or another writer moved its cursor)."""


class _ProcessOnly:
    """The sync lock of a scheduler given none: one sync at a time in this process only."""

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[bool]:
        yield True


def check_pattern(pattern: str) -> str:
    """A repository glob (``*``, ``?``) over the characters repository names may hold."""
    if not _PATTERN.fullmatch(pattern):
        raise ValueError(
            f"not a repository pattern: {pattern[:300]!r} (lowercase name characters, "
            "with * and ? as wildcards, e.g. team/* or app-?)"
        )
    return pattern


def batch_size(run: RunView, moment: datetime, max_per_tick: int) -> int:
    """How many images ``run`` may queue at ``moment``: its share of the spread window so far,
    minus what it queued already, at most ``max_per_tick``. Once its share is all queued it
    keeps asking for a full batch, which finds the images pushed since the start or, finding
    none, ends the run."""
    spread = run.spread_seconds
    elapsed = (moment - run.created_at).total_seconds()
    fraction = 1.0 if spread <= 0 else min(max(elapsed / spread, 0.0), 1.0)
    target = math.ceil(run.total * fraction)
    if run.queued >= run.total and fraction >= 1.0:
        return max_per_tick
    return min(max(target - run.queued, 0), max_per_tick)


def next_due(due: datetime, interval: float, moment: datetime) -> datetime:
    """The due time after ``due``; runs missed while no replica ran collapse into one."""
    following = due + timedelta(seconds=interval)
    return following if following > moment else moment + timedelta(seconds=interval)


class Scheduler:
    """One replica's scheduler loop; see the module docstring for what a tick does."""

    def __init__(
        self,
        settings: Settings,
        db: async_sessionmaker[Any],
        lock: ClusterLock,
        *,
        mirror: MirrorSync | None = None,
        sync_lock: ClusterLock | None = None,
        on_queued: Callable[[int], None] | None = None,
        settle: Callable[[datetime], Awaitable[int]] | None = None,
        warm: Callable[[], Awaitable[object]] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.db = db
        self.lock = lock
        self.mirror = mirror
        self._sync_lock: ClusterLock = sync_lock or _ProcessOnly()
        """Held by a running sync; cluster-wide when given (``build_scheduler`` gives one)."""
        self._sync_task: asyncio.Task[None] | None = None
        self._settle = settle
        """Re-evaluation owed by imports whose importer died (``rescan.settle_unfinished``)."""
        self._on_queued = on_queued or (lambda n: None)
        self._warm = warm
        """Keeps the ``[prefetch] images`` warm (``proxy.prefetch.warm_up``)."""
        self._warm_task: asyncio.Task[None] | None = None
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.settings.rescan
        if cfg.interval:
            log.info(
                "periodic re-verification every %ss, spread over %ss", cfg.interval, cfg.spread
            )
        else:
            log.info("periodic re-verification is off ([rescan] interval); manual runs only")
        if self.mirror is None:
            log.info("advisory mirror sync is off (no [advisories] mirror_url)")
        elif not self.settings.advisories.sync_interval:
            log.info("scheduled advisory sync is off ([advisories] sync_interval)")
        prefetch = self.settings.prefetch
        if self._warm is not None and prefetch.images and prefetch.interval:
            log.info(
                "%d prefetch images kept warm every %ss", len(prefetch.images), prefetch.interval
            )
        elif prefetch.images:
            log.info("prefetch images are not kept warm ([prefetch] interval is off)")
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def close(self) -> None:
        """Stop the loop between ticks: a tick in progress finishes (its batch commits, the
        lock is given back) rather than being cancelled inside a transaction; only a tick
        still busy after ``STOP_GRACE`` seconds is cancelled. A running mirror sync is
        cancelled at once (its import rolls back, it stays due for the next start)."""
        await self._stop_sync()
        await self._stop_warm()
        if self._task is None:
            return
        self._stopping.set()
        done, _ = await asyncio.wait([self._task], timeout=STOP_GRACE)
        if not done:
            self._task.cancel()
            done, _ = await asyncio.wait([self._task], timeout=STOP_GRACE)
        if not done:
            log.error("the scheduler did not stop; leaving it behind")
        elif not self._task.cancelled() and self._task.exception() is not None:
            log.error("the scheduler had stopped on: %r", self._task.exception())
        self._task = None

    async def _stop_sync(self) -> None:
        task, self._sync_task = self._sync_task, None
        if task is None or task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=STOP_GRACE)
        if not done:
            log.error("the advisory sync did not stop; leaving it behind")

    async def _stop_warm(self) -> None:
        task, self._warm_task = self._warm_task, None
        if task is None or task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=STOP_GRACE)
        if not done:
            log.error("the prefetch warm-up did not stop; leaving it behind")

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except DATABASE_ERRORS as exc:
                log.error("scheduler tick failed (database): %s", exc)
            except Exception:
                log.exception("scheduler tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.rescan.tick)

    # -- one tick -----------------------------------------------------------------------------

    async def tick(self) -> bool:
        """Do whatever is due, if this replica holds the lock; False if another one does."""
        async with self.lock.hold() as held:
            if not held:
                return False
            await self.schedule_run(self._clock())
            await self.advance(self._clock())
            if self._settle is not None:
                await self._settle(self._clock())
            await self.sync_mirror(self._clock())
            await self.warm_prefetch(self._clock())
            return True

    async def schedule_run(self, moment: datetime) -> RunView | None:
        """Start the scheduled run if it is due; the first due time is one interval after the
        first tick ever, so a fresh deployment does not re-verify what it just verified."""
        interval = self.settings.rescan.interval
        if not interval:
            return None
        spread = self.settings.rescan.spread

        async def start(session: AsyncSession) -> RunView | None:
            # In the writer thread (storage.writer): reads only the values captured here.
            due = await schedules.due_at(session, RESCAN)
            first = moment + timedelta(seconds=interval)
            # None: the first tick ever. Past ``first``: the interval was shortened since.
            if due is None or due > first:
                await schedules.set_due(session, RESCAN, first)
                return None
            if due > moment:
                return None
            await schedules.set_due(session, RESCAN, next_due(due, interval, moment))
            active = await schedules.active_run(session)
            if active is not None:
                log.info("scheduled re-verification skipped: run %s is still running", active.id)
                return None
            return await schedules.start_run(
                session,
                trigger="schedule",
                requested_by="schedule",
                pattern=None,
                spread_seconds=spread,
                moment=moment,
            )

        run = await transact(self.db, start)
        if run is None:
            return None
        log.info("scheduled re-verification run %s started: %s images", run.id, run.total)
        return run

    async def advance(self, moment: datetime) -> int:
        """Queue the running run's next batch; how many images were queued."""
        cfg = self.settings.rescan
        found: list[RunView] = []

        async def queue(session: AsyncSession) -> tuple[int, bool] | None:
            # In the writer thread (storage.writer): reads only the values captured here.
            run = await schedules.active_run(session)
            if run is None:
                return None
            found.append(run)
            size = batch_size(run, moment, cfg.max_per_tick)
            if size == 0 or await schedules.queued_jobs(session) >= cfg.max_queued_jobs:
                return None
            outcome = await schedules.queue_batch(session, run, size, moment)
            if outcome is None:
                raise _Moved
            return outcome

        try:
            outcome = await transact(self.db, queue)
        except _Moved:
            log.info("run %s changed during this tick; its batch was rolled back", found[0].id)
            return 0
        if outcome is None:
            return 0
        run = found[0]
        queued, finished = outcome
        self._on_queued(queued)
        if finished:
            log.info("re-verification run %s: all %s images queued", run.id, run.queued + queued)
        return queued

    async def sync_mirror(self, moment: datetime) -> bool:
        """Start the advisory mirror sync if it is due (at once on the very first tick, since
        a fresh deployment has no advisories) and none is running here; True if one started.
        Returns at once: the sync runs as a task of its own (see :meth:`wait_sync`)."""
        if self.mirror is None or not self.settings.advisories.sync_interval:
            return False
        if self._sync_task is not None and not self._sync_task.done():
            return False
        if not await self._sync_due(moment):
            return False
        self._sync_task = asyncio.create_task(self._sync(), name="advisory-sync")
        return True

    async def warm_prefetch(self, moment: datetime) -> bool:
        """Start the warm-up of the ``[prefetch] images`` if it is due and none is running
        here; True if one started. Returns at once (see :meth:`wait_warm`)."""
        prefetch = self.settings.prefetch
        if self._warm is None or not prefetch.images or not prefetch.interval:
            return False
        if self._warm_task is not None and not self._warm_task.done():
            return False
        async with self.db() as session, session.begin():
            due = await schedules.due_at(session, PREFETCH)
            if due is not None and due > moment:
                return False
            await schedules.set_due(
                session, PREFETCH, moment + timedelta(seconds=prefetch.interval)
            )
        self._warm_task = asyncio.create_task(self._run_warm(self._warm), name="prefetch-warm")
        return True

    async def wait_warm(self) -> None:
        """Wait for the warm-up started by :meth:`warm_prefetch`, if one is running."""
        if self._warm_task is not None:
            await asyncio.wait([self._warm_task])

    async def _run_warm(self, warm: Callable[[], Awaitable[object]]) -> None:
        try:
            await warm()
        except DATABASE_ERRORS as exc:
            log.error("prefetch warm-up: database unavailable, next at the next due time: %s", exc)
        except Exception:
            log.exception("prefetch warm-up failed; next at the next due time")

    async def wait_sync(self) -> None:
        """Wait for the sync started by :meth:`sync_mirror`, if one is running."""
        if self._sync_task is not None:
            await asyncio.wait([self._sync_task])

    async def _sync_due(self, moment: datetime) -> bool:
        async with self.db() as session:
            due = await schedules.due_at(session, SYNC)
        return due is None or due <= moment

    async def _sync(self) -> None:
        """Sync every URL under the sync lock, then set the next due time whatever happened:
        a failed URL is a result (logged and counted by ``MirrorSync``) and even a crash of
        the whole sync is retried at the next due time, not at every tick. Only a stop
        (cancellation) leaves it due, for the next start."""
        assert self.mirror is not None
        try:
            async with self._sync_lock.hold() as held:
                # Still due? Another replica may have finished a sync since the tick looked.
                if not held or not await self._sync_due(self._clock()):
                    log.debug("advisory sync skipped: another process is syncing or just did")
                    return
                try:
                    await self.mirror.sync_all()
                except Exception:
                    log.exception("advisory sync failed; trying again at the next due time")
                # Set after the attempt: a replica that dies mid-sync leaves it due for the
                # next one (which waits for the lock the dead one held to be released).
                interval = self.settings.advisories.sync_interval
                async with self.db() as session, session.begin():
                    due = self._clock() + timedelta(seconds=interval)
                    await schedules.set_due(session, SYNC, due)
        except DATABASE_ERRORS as exc:
            log.error("advisory sync: database unavailable, trying again next tick: %s", exc)
        except Exception:
            log.exception("advisory sync could not run; trying again next tick")


async def start_manual_run(
    db: async_sessionmaker[Any],
    *,
    pattern: str | None,
    requested_by: str,
    spread_seconds: float,
    moment: datetime | None = None,
) -> RunView:
    """Record a run started by hand (``gatekeeper rescan``); any replica's scheduler carries it
    out. Raises ``storage.schedules.RunActive`` while another run is running."""
    if pattern is not None:
        check_pattern(pattern)
    async with db() as session, session.begin():
        return await schedules.start_run(
            session,
            trigger="manual",
            requested_by=requested_by,
            pattern=pattern,
            spread_seconds=spread_seconds,
            moment=moment or utcnow(),
        )


def build_scheduler(
    settings: Settings,
    engine: AsyncEngine,
    db: async_sessionmaker[Any],
    metrics: SchedulerMetrics,
    mirror_client: httpx.AsyncClient | None,
    *,
    owner: str,
    bus: EventBus,
    warm: Callable[[], Awaitable[object]] | None = None,
) -> Scheduler:
    """The scheduler a serving gatekeeper runs, with the right lock for its database and the
    mirror sync when mirror URLs are configured (``mirror_client`` given). After a sync the
    affected images are re-evaluated with this gatekeeper's policies, and verdict changes go
    out on its event bus (webhooks, audit), as after any advisory import. ``warm`` keeps the
    ``[prefetch] images`` warm (``proxy.prefetch.warm_up``)."""
    from services.mirror import SYNC_LOCK, MirrorSync
    from services.rescan import queue_affected, settle_unfinished

    async def after_import(db: async_sessionmaker[Any], result: ImportResult) -> int:
        return await queue_affected(db, result, policies=settings.policies, publish=bus.publish)

    async def settle(moment: datetime) -> int:
        return await settle_unfinished(
            db, policies=settings.policies, publish=bus.publish, moment=moment
        )

    mirror = None
    if mirror_client is not None and settings.advisories.urls:
        mirror = MirrorSync(
            settings.advisories,
            db,
            mirror_client,
            on_result=lambda r: metrics.advisory_syncs.labels(r.status).inc(),
            queue=after_import,
        )
    lease = settings.rescan.lease_seconds
    return Scheduler(
        settings,
        db,
        cluster_lock(engine, db, owner, lease),
        mirror=mirror,
        sync_lock=cluster_lock(engine, db, owner, lease, name=SYNC_LOCK),
        on_queued=metrics.rescan_queued.inc,
        settle=settle,
        warm=warm,
    )
