"""The re-verification scheduler on a real database with a fake clock: schedule, spread,
cursor, resume after a crash, cancel, back-pressure, and the cluster-wide lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from config.settings import ConfigError, Settings, load_settings
from services.scheduler import (
    RESCAN,
    Scheduler,
    batch_size,
    check_pattern,
    next_due,
    start_manual_run,
)
from storage import schedules, verdicts
from storage.db import create_engine, sessionmaker, upgrade
from storage.locks import LeaseLock, cluster_lock, lock_key
from storage.models import Job, RescanRun, SchedulerLease
from storage.schedules import RunActive, RunView
from tests.fakes.clock import Clock
from tests.support.database import Database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IMAGES = [("team/api", f"sha256:{n:064x}") for n in range(6)] + [
    ("team/web", f"sha256:{n:064x}") for n in range(4)
]


@pytest.fixture
async def engine(fresh_db: Database) -> AsyncIterator[Any]:
    engine = create_engine(fresh_db.url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: Any) -> Any:
    db = sessionmaker(engine)
    async with db() as session, session.begin():
        for repository, digest in IMAGES:
            await verdicts.ensure_pending(session, repository, digest, "test", "pushed")
    return db


def settings(**rescan: Any) -> Settings:
    values = {"interval": "1h", "spread": "100s", "max_per_tick": 100, **rescan}
    return load_settings(env={f"GATEKEEPER_RESCAN__{k.upper()}": str(v) for k, v in values.items()})


class NoLock:
    """Every tick wins: the single-process case, without the lock under test."""

    def hold(self) -> Any:
        import contextlib

        @contextlib.asynccontextmanager
        async def held() -> AsyncIterator[bool]:
            yield True

        return held()


async def run_jobs(db: Any, reason: str | None = None) -> list[tuple[str, str]]:
    async with db() as session:
        query = select(Job.repository, Job.digest)
        if reason is not None:
            query = query.where(Job.reason == reason)
        return [(r, d) for r, d in (await session.execute(query.order_by(Job.id))).all()]


async def current(db: Any) -> RunView:
    async with db() as session:
        run = await schedules.latest_run(session)
    assert run is not None
    return run


def view(total: int, queued: int, spread: float) -> RunView:
    return RunView(
        1, "schedule", "s", None, "running", total, queued, spread, T0, T0, None, None, None
    )


# -- pure pacing -------------------------------------------------------------------------------


def test_a_run_is_spread_evenly_over_its_window() -> None:
    run = view(total=10, queued=0, spread=100)
    assert batch_size(run, T0, 100) == 0
    assert batch_size(run, T0 + timedelta(seconds=10), 100) == 1
    assert batch_size(run, T0 + timedelta(seconds=55), 100) == 6
    assert batch_size(view(10, 6, 100), T0 + timedelta(seconds=55), 100) == 0
    assert batch_size(view(10, 6, 100), T0 + timedelta(seconds=500), 100) == 4
    assert batch_size(view(10, 0, 100), T0 + timedelta(seconds=500), 3) == 3  # per-tick cap
    # All queued: a full batch looks for images pushed since the start, or ends the run.
    assert batch_size(view(10, 10, 100), T0 + timedelta(seconds=500), 7) == 7
    assert batch_size(view(10, 0, 0), T0, 100) == 10  # no spread: as fast as allowed


def test_missed_runs_collapse_into_one() -> None:
    assert next_due(T0, 3600, T0 + timedelta(seconds=10)) == T0 + timedelta(hours=1)
    late = T0 + timedelta(hours=5, minutes=1)
    assert next_due(T0, 3600, late) == late + timedelta(hours=1)


def test_repository_patterns_are_checked() -> None:
    assert check_pattern("team/*") == "team/*"
    for bad in ("Team/*", "a b", "", "x" * 300, "team/%"):
        with pytest.raises(ValueError, match="not a repository pattern"):
            check_pattern(bad)


def test_durations_in_settings() -> None:
    cfg = settings(interval="1h30m", spread="90s").rescan
    assert (cfg.interval, cfg.spread) == (5400.0, 90.0)
    assert settings(interval="off").rescan.interval == 0
    assert Settings().rescan.interval == 86400  # on by default: signatures expire
    with pytest.raises(ConfigError, match=r"rescan\.interval"):
        settings(interval="soon")
    mirror = load_settings(
        env={
            "GATEKEEPER_ADVISORIES__MIRROR_URL": "https://m.example/PyPI/all.zip",
            "GATEKEEPER_ADVISORIES__MIRROR_URLS": '["https://m.example/Go/all.zip"]',
            "GATEKEEPER_ADVISORIES__SYNC_INTERVAL": "6h",
        }
    ).advisories
    assert mirror.urls == ["https://m.example/PyPI/all.zip", "https://m.example/Go/all.zip"]
    assert mirror.sync_interval == 6 * 3600


# -- runs on the database ----------------------------------------------------------------------


async def test_scheduled_run_starts_one_interval_after_the_first_tick(db: Any) -> None:
    clock = Clock()
    scheduler = Scheduler(settings(), db, NoLock(), clock=clock)
    assert await scheduler.tick()
    async with db() as session:
        assert await schedules.latest_run(session) is None
        assert await schedules.due_at(session, RESCAN) == T0 + timedelta(hours=1)
    clock.advance(3599)
    await scheduler.tick()
    assert await run_jobs(db) == []
    clock.advance(1)
    await scheduler.tick()
    run = await current(db)
    assert (run.trigger, run.state, run.total, run.queued) == ("schedule", "running", 10, 0)
    async with db() as session:
        assert await schedules.due_at(session, RESCAN) == T0 + timedelta(hours=2)
    # A shorter interval in the settings applies from the next tick, not after the old one.
    await Scheduler(settings(interval="10m"), db, NoLock(), clock=clock).tick()
    async with db() as session:
        assert await schedules.due_at(session, RESCAN) == clock.now + timedelta(minutes=10)


async def test_a_run_spreads_queues_each_image_once_and_finishes(db: Any) -> None:
    clock = Clock()
    queued: list[int] = []
    scheduler = Scheduler(settings(), db, NoLock(), clock=clock, on_queued=queued.append)
    async with db() as session, session.begin():
        await schedules.set_due(session, RESCAN, T0)
    await scheduler.tick()  # starts the run; nothing is due yet at 0 s
    run = await current(db)
    assert await run_jobs(db) == []
    clock.advance(30)
    await scheduler.tick()
    assert len(await run_jobs(db)) == 3
    clock.advance(40)
    await scheduler.tick()
    assert len(await run_jobs(db)) == 7
    clock.advance(40)
    await scheduler.tick()  # window over: the rest
    await scheduler.tick()  # finds nothing more: done
    assert sorted(await run_jobs(db, run.reason)) == sorted(IMAGES)
    finished = await current(db)
    assert (finished.state, finished.queued, finished.finished_at) == ("done", 10, clock.now)
    assert sum(queued) == 10


async def test_back_pressure_holds_batches_while_the_queue_is_full(db: Any) -> None:
    scheduler = Scheduler(settings(max_queued_jobs=3, spread=0), db, NoLock(), clock=Clock())
    await start_manual_run(db, pattern=None, requested_by="t", spread_seconds=0, moment=T0)
    assert await scheduler.advance(T0) == 10
    async with db() as session, session.begin():
        await start_again_blocked(session)
    run = await current(db)
    assert run.state == "running"  # 10 == limit: it needs one more look to know it is done
    assert await scheduler.advance(T0) == 0  # 10 jobs wait, limit 3: nothing queued


async def start_again_blocked(session: Any) -> None:
    with pytest.raises(RunActive, match="still running"):
        await schedules.start_run(
            session, trigger="manual", requested_by="t", pattern=None, spread_seconds=0, moment=T0
        )


async def test_a_run_resumes_after_a_restart_without_skipping_or_repeating(db: Any) -> None:
    cfg = settings(max_per_tick=4, spread=0)
    await start_manual_run(db, pattern=None, requested_by="t", spread_seconds=0, moment=T0)
    assert await Scheduler(cfg, db, NoLock()).advance(T0) == 4
    # A crash mid-batch: jobs queued, cursor moved, but never committed.
    with pytest.raises(RuntimeError, match="killed"):
        async with db() as session, session.begin():
            run = await schedules.active_run(session)
            assert run is not None
            assert await schedules.queue_batch(session, run, 4, T0) == (4, False)
            raise RuntimeError("killed")
    assert len(await run_jobs(db)) == 4 and (await current(db)).queued == 4
    restarted = Scheduler(cfg, db, NoLock())  # a new process: state only from the database
    while (await current(db)).state == "running":
        await restarted.advance(T0)
    jobs = await run_jobs(db)
    assert sorted(jobs) == sorted(IMAGES) and len(jobs) == len(set(jobs))


async def test_the_database_itself_allows_one_running_run(db: Any) -> None:
    """Even two writers that both passed the "none running" check cannot both insert."""
    await start_manual_run(db, pattern=None, requested_by="t", spread_seconds=0)
    with pytest.raises(IntegrityError):
        async with db() as session, session.begin():
            session.add(
                RescanRun(
                    trigger="manual",
                    requested_by="racer",
                    state="running",
                    total=0,
                    queued=0,
                    spread_seconds=0,
                    created_at=T0,
                    updated_at=T0,
                )
            )


async def test_a_stale_writer_cannot_queue_the_same_batch(db: Any) -> None:
    run = await start_manual_run(db, pattern=None, requested_by="t", spread_seconds=0)
    async with db() as session, session.begin():
        assert await schedules.queue_batch(session, run, 3, T0) == (3, False)
    async with db() as session, session.begin():
        assert await schedules.queue_batch(session, run, 3, T0) is None  # cursor moved on


async def test_cancel_stops_the_run_and_withdraws_its_waiting_jobs(db: Any) -> None:
    await start_manual_run(db, pattern=None, requested_by="t", spread_seconds=0, moment=T0)
    scheduler = Scheduler(settings(max_per_tick=4), db, NoLock())
    await scheduler.advance(T0)
    run = await current(db)
    async with db() as session, session.begin():
        cancelled = await schedules.cancel_run(session, run.id, "cli:ops", T0)
    assert cancelled is not None
    stopped, withdrawn = cancelled
    assert (stopped.state, stopped.note, withdrawn) == ("cancelled", "cancelled by cli:ops", 4)
    assert await scheduler.advance(T0) == 0
    async with db() as session:
        states = await schedules.job_states(session, run.id)
        assert states == {"cancelled": 4}
        assert await schedules.cancel_run(session, run.id, "again", T0) is None
    # and a new run may start
    await start_manual_run(db, pattern=None, requested_by="t", spread_seconds=0)


async def test_a_pattern_limits_the_run(db: Any) -> None:
    async with db() as session, session.begin():
        await verdicts.ensure_pending(session, "team_x", "sha256:" + "f" * 64, "t", "p")
        await verdicts.ensure_pending(session, "teamyx", "sha256:" + "e" * 64, "t", "p")
    run = await start_manual_run(db, pattern="team/w*", requested_by="t", spread_seconds=0)
    assert run.total == 4
    await Scheduler(settings(), db, NoLock()).advance(T0)
    assert {r for r, _ in await run_jobs(db)} == {"team/web"}
    async with db() as session:
        assert await schedules.count_images(session, "team_x") == 1  # `_` is not a wildcard
        assert await schedules.count_images(session, "team?x") == 2
        assert await schedules.count_images(session, "*") == 12


# -- the cluster-wide lock ---------------------------------------------------------------------


async def test_the_lock_is_held_by_one_replica_at_a_time(db: Any, engine: Any) -> None:
    """On the session's backend: the advisory lock (PostgreSQL) or the lease (SQLite)."""
    first, second = (cluster_lock(engine, db, owner, 60) for owner in ("a", "b"))
    async with first.hold() as held:
        assert held
        async with second.hold() as other:
            assert not other
    async with second.hold() as held:
        assert held  # given back at the end of the first hold


async def test_a_lease_of_a_vanished_process_expires(db: Any) -> None:
    vanished = LeaseLock(db, "scheduler", "vanished", 5)
    assert await vanished._claim()  # and never given back: the process died
    async with LeaseLock(db, "scheduler", "next", 5).hold() as held:
        assert not held
    async with db() as session, session.begin():
        await session.execute(
            update(SchedulerLease)
            .execution_options(synchronize_session=False)
            .values(expires_at=T0)
        )
    async with LeaseLock(db, "scheduler", "next", 5).hold() as held:
        assert held


async def test_replicas_ticking_together_queue_each_image_once(db: Any, engine: Any) -> None:
    """Several schedulers on one database, each with its own lock handle (SQLite: the lease;
    PostgreSQL: the advisory lock), tick at the same moments."""
    cfg = settings(max_per_tick=3, spread=0)
    replicas = [Scheduler(cfg, db, cluster_lock(engine, db, f"replica-{n}", 60)) for n in range(3)]
    await start_manual_run(db, pattern=None, requested_by="t", spread_seconds=0)
    for _ in range(6):
        won = await asyncio.gather(*(r.tick() for r in replicas))
        assert won.count(True) >= 1
    jobs = await run_jobs(db)
    assert sorted(jobs) == sorted(IMAGES) and len(jobs) == len(set(jobs))
    async with db() as session:
        assert await session.scalar(select(func.count()).select_from(Job)) == 10


async def test_a_stop_in_the_middle_of_ticks_is_prompt(db: Any, engine: Any) -> None:
    """Stopping while a tick holds the lock neither hangs nor keeps the lock."""
    cfg = settings(tick="0.001", spread=0, max_per_tick=1)
    await start_manual_run(db, pattern=None, requested_by="t", spread_seconds=0)
    for delay in (0.0, 0.01, 0.03, 0.05, 0.08):
        scheduler = Scheduler(cfg, db, cluster_lock(engine, db, "stopping", 60))
        scheduler.start()
        await asyncio.sleep(delay)
        await asyncio.wait_for(scheduler.close(), 5)
    async with cluster_lock(engine, db, "another", 60).hold() as held:
        assert held


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("scheduler") == lock_key("scheduler")
    assert lock_key("scheduler") != lock_key("other")
    assert -(2**63) <= lock_key("scheduler") < 2**63


def prefetching(**prefetch: Any) -> Settings:
    values = {"images": '["library/alpine:3.20"]', "interval": "6h", **prefetch}
    env = {f"GATEKEEPER_PREFETCH__{k.upper()}": str(v) for k, v in values.items()}
    return load_settings(env={**env, "GATEKEEPER_RESCAN__INTERVAL": "off"})


async def test_the_prefetch_list_is_warmed_at_once_then_every_interval(db: Any) -> None:
    clock, warmed = Clock(), []

    async def warm() -> None:
        warmed.append(clock.now)

    scheduler = Scheduler(prefetching(), db, NoLock(), warm=warm, clock=clock)
    assert await scheduler.tick()
    await scheduler.wait_warm()
    assert warmed == [T0]  # a fresh deployment has nothing warm yet
    clock.advance(3600)
    await scheduler.tick()
    await scheduler.wait_warm()
    assert warmed == [T0]
    clock.advance(5 * 3600)
    await scheduler.tick()
    await scheduler.wait_warm()
    assert len(warmed) == 2


async def test_replicas_warm_the_prefetch_list_once(db: Any, engine: Any) -> None:
    warmed: list[str] = []

    def warm(name: str) -> Any:
        async def run() -> None:
            warmed.append(name)

        return run

    cfg = prefetching()
    replicas = [
        Scheduler(cfg, db, cluster_lock(engine, db, f"replica-{n}", 60), warm=warm(f"r{n}"))
        for n in range(3)
    ]
    await asyncio.gather(*(r.tick() for r in replicas))
    await asyncio.gather(*(r.wait_warm() for r in replicas))
    assert len(warmed) == 1


async def test_a_failed_warm_up_waits_for_the_next_interval(db: Any) -> None:
    clock, calls = Clock(), []

    async def warm() -> None:
        calls.append(clock.now)
        raise RuntimeError("the registry is down")

    scheduler = Scheduler(prefetching(), db, NoLock(), warm=warm, clock=clock)
    await scheduler.tick()
    await scheduler.wait_warm()
    clock.advance(60)
    await scheduler.tick()
    await scheduler.wait_warm()
    assert calls == [T0]  # not retried at every tick


async def test_no_images_or_interval_off_warms_nothing(db: Any) -> None:
    calls: list[int] = []

    async def warm() -> None:
        calls.append(1)

    for cfg in (prefetching(images="[]"), prefetching(interval="off")):
        scheduler = Scheduler(cfg, db, NoLock(), warm=warm, clock=Clock())
        assert not await scheduler.warm_prefetch(T0)
    assert calls == []
