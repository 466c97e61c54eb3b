"""The per-identity upload-session cap in the database: exact under concurrency, freed by
finish, and forgiving of sessions that went idle or whose replica is gone."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from proxy.upload_sessions import TOUCH_GRACE_SECONDS, LastUse, PruneClock
from storage import fresh_uploads, replicas, uploads
from storage.models import UploadOwner, UploadSession
from storage.replicas import Holder
from storage.writer import commit_one
from tests.fakes.clock import Clock

HOUR = timedelta(hours=1)
HERE = Holder("replica-1", timedelta(days=1))
"""The replica the tests reserve through (present: see ``_present``). A replica counts as
gone after a day's silence here, so the clock can move by minutes without heartbeats; the test
of a silent replica has its own."""
STARTED = datetime(2026, 1, 1, tzinfo=UTC)
_UPSTREAM = (f"upstream-{n}" for n in itertools.count())


@pytest.fixture(autouse=True)
async def _present(db: async_sessionmaker[Any]) -> None:
    async with db() as session, session.begin():
        await replicas.beat(session, HERE.replica, STARTED)


async def reserve(
    db: async_sessionmaker[Any],
    owner: str = "alice",
    limit: int = 3,
    idle: timedelta = HOUR,
    holder: Holder = HERE,
    upstream: str | None = None,
) -> int | None:
    """A session recorded (``upstream``: the upstream's id for it, else a new one), and the
    prune the proxy runs beside it when due."""
    async with db() as session, session.begin():
        reservation = await uploads.reserve(
            session,
            owner,
            "repo/a",
            upstream or next(_UPSTREAM),
            limit=limit,
            idle=idle,
            holder=holder,
        )
        await uploads.prune(session, idle)
        return reservation


async def test_the_limit_is_per_owner(db: async_sessionmaker[Any]) -> None:
    taken = [await reserve(db) for _ in range(3)]
    assert None not in taken and len(set(taken)) == 3
    assert await reserve(db) is None
    assert await reserve(db, owner="bob") is not None


async def test_concurrent_reservations_never_exceed_the_limit(
    db: async_sessionmaker[Any],
) -> None:
    results = await asyncio.gather(*(reserve(db, limit=7) for _ in range(40)))
    assert len([r for r in results if r is not None]) == 7


async def test_a_refused_session_is_not_recorded_and_finish_frees_a_slot(
    db: async_sessionmaker[Any],
) -> None:
    first = await reserve(db, limit=2, upstream="first")
    second = await reserve(db, limit=2, upstream="second")
    assert first is not None and second is not None
    assert await reserve(db, limit=2, upstream="refused") is None
    async with db() as session:
        assert await uploads.holder(session, "repo/a", "refused") is None
    async with db() as session, session.begin():
        await uploads.finish(session, "repo/a", "first")
    assert await reserve(db, limit=2) is not None
    assert await reserve(db, limit=2) is None


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch, db: async_sessionmaker[Any]) -> Clock:
    clock = Clock()
    monkeypatch.setattr(uploads, "now", clock)
    monkeypatch.setattr(replicas, "now", clock)
    monkeypatch.setattr(fresh_uploads, "now", clock)
    async with db() as session, session.begin():
        await replicas.beat(session, HERE.replica, STARTED)  # heard from at the clock's time
    return clock


async def _beat(db: async_sessionmaker[Any], holder: Holder) -> None:
    async with db() as session, session.begin():
        await replicas.beat(session, holder.replica, STARTED)


async def test_a_stopped_replicas_sessions_stop_counting_at_once(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    """A replica that stops cleanly leaves: with a cap of 1, its user can start again through
    another replica now, not after the idle timeout."""
    other = Holder("replica-2", HERE.gone_after)
    await _beat(db, other)
    assert await reserve(db, limit=1, holder=other) is not None
    assert await reserve(db, limit=1) is None
    async with db() as session, session.begin():
        await replicas.leave(session, other.replica)
    async with db() as session:
        assert await uploads.live_count(session, "alice", HOUR, HERE) == 0
    assert await reserve(db, limit=1) is not None


async def test_a_silent_replicas_sessions_stop_counting_and_a_touch_takes_them_over(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    """A crashed replica falls silent: its sessions count while it may still be there, not
    after; a request on one through another replica makes that one its holder again."""
    gone_after = timedelta(seconds=15)
    here = Holder(HERE.replica, gone_after)
    crashed = Holder("replica-2", gone_after)
    await _beat(db, crashed)
    assert await reserve(db, limit=1, holder=crashed, upstream="u1") is not None
    clock.advance(gone_after - timedelta(seconds=1))
    await _beat(db, here)
    assert await reserve(db, limit=1, holder=here) is None  # it may still be there
    clock.advance(timedelta(seconds=2))
    await _beat(db, here)
    async with db() as session, session.begin():
        assert await uploads.live_count(session, "alice", HOUR, here) == 0
        await uploads.touch(session, "repo/a", "u1", here)  # the client goes on through here
        assert await uploads.live_count(session, "alice", HOUR, here) == 1
    assert await reserve(db, limit=1, holder=here) is None


async def test_a_session_of_no_recorded_replica_counts_until_idle(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    """Sessions made before replicas were tracked keep the old rule."""
    async with db() as session, session.begin():
        session.add(UploadSession(owner="alice", repository="repo/a", last_seen=clock()))
    assert await reserve(db, limit=1, idle=timedelta(minutes=5)) is None
    clock.advance(timedelta(minutes=6))
    await _beat(db, HERE)
    assert await reserve(db, limit=1, idle=timedelta(minutes=5)) is not None


async def test_idle_sessions_stop_counting(db: async_sessionmaker[Any], clock: Clock) -> None:
    idle = timedelta(minutes=5)
    assert await reserve(db, limit=1, idle=idle) is not None
    clock.advance(idle - timedelta(seconds=1))
    assert await reserve(db, limit=1, idle=idle) is None
    clock.advance(timedelta(seconds=2))
    async with db() as session:
        assert await uploads.live_count(session, "alice", idle, HERE) == 0
    assert await reserve(db, limit=1, idle=idle) is not None


async def test_touch_keeps_a_session_alive(db: async_sessionmaker[Any], clock: Clock) -> None:
    idle = timedelta(minutes=5)
    assert await reserve(db, limit=1, idle=idle, upstream="u1") is not None
    for _ in range(3):
        clock.advance(timedelta(minutes=3))  # 9 minutes in all: idle but for the touches
        async with db() as session, session.begin():
            await uploads.touch(session, "repo/a", "u1", HERE)
    assert await reserve(db, limit=1, idle=idle) is None


async def _rows(db: async_sessionmaker[Any]) -> tuple[set[str], set[str]]:
    """Owners with a row, and owners holding a session row."""
    async with db() as session:
        owners = set(await session.scalars(select(UploadOwner.owner)))
        holders = set(await session.scalars(select(UploadSession.owner)))
    return owners, holders


async def test_a_reservation_forgets_other_identities_gone_idle(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    """Anonymous clients are one identity per address: without pruning, every address that ever
    pushed would keep its rows for good."""
    idle = timedelta(minutes=5)
    for owner in ("10.0.0.1", "10.0.0.2", "alice"):
        assert await reserve(db, owner=owner, idle=idle) is not None
    clock.advance(timedelta(minutes=4))
    assert await reserve(db, owner="alice", idle=idle) is not None  # alice stays live
    clock.advance(timedelta(minutes=2))  # the two addresses and alice's first session are idle
    assert await _rows(db) == ({"10.0.0.1", "10.0.0.2", "alice"},) * 2
    assert await reserve(db, owner="bob", idle=idle) is not None
    assert await _rows(db) == ({"alice", "bob"}, {"alice", "bob"})
    async with db() as session:
        assert await uploads.live_count(session, "alice", idle, HERE) == 1


async def test_pruning_is_bounded_per_reservation(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    idle = timedelta(minutes=5)
    count = uploads.PRUNE_BATCH + 20
    for i in range(count):
        assert await reserve(db, owner=f"10.0.{i // 256}.{i % 256}", idle=idle) is not None
    clock.advance(idle * 2)
    assert await reserve(db, owner="bob", idle=idle) is not None
    owners, holders = await _rows(db)
    assert len(holders) == count - uploads.PRUNE_BATCH + 1  # bob and 20 left for later
    assert await reserve(db, owner="carol", idle=idle) is not None
    owners, holders = await _rows(db)
    assert owners == holders == {"bob", "carol"}


async def test_holder_names_who_opened_a_session_in_its_repository(
    db: async_sessionmaker[Any],
) -> None:
    async with db() as session:
        assert await uploads.holder(session, "repo/a", "uuid-1") is None  # not recorded yet
    assert await reserve(db, owner="alice", upstream="uuid-1") is not None
    async with db() as session:
        assert await uploads.holder(session, "repo/a", "uuid-1") == "alice"
        opened = await uploads.opened(session, "repo/a", "uuid-1")
        assert opened is not None and (opened.owner, opened.replica) == ("alice", HERE.replica)
        assert await uploads.opened(session, "repo/b", "uuid-1") is None
        assert await uploads.holder(session, "repo/b", "uuid-1") is None
        assert await uploads.holder(session, "repo/a", "uuid-2") is None
    async with db() as session, session.begin():
        await uploads.finish(session, "repo/a", "uuid-1")
    async with db() as session:
        assert await uploads.holder(session, "repo/a", "uuid-1") is None


def test_pruning_waits_unless_a_batch_was_full() -> None:
    now = [100.0]
    clock = PruneClock(every=5.0, clock=lambda: now[0])
    assert clock.due()
    clock.done(more=False)
    assert not clock.due()
    now[0] += 4.9
    assert not clock.due()
    now[0] += 0.2
    assert clock.due()
    clock.done(more=True)  # a full batch: more idle rows may wait, so again at once
    assert clock.due()


async def test_prune_says_when_its_batch_was_full(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    idle = timedelta(minutes=5)
    for i in range(uploads.PRUNE_BATCH + 1):
        async with db() as session, session.begin():
            await uploads.reserve(
                session, f"10.1.0.{i}", "repo/a", f"u{i}", limit=3, idle=idle, holder=HERE
            )
    clock.advance(idle * 2)
    async with db() as session, session.begin():
        assert await uploads.prune(session, idle) is True
    async with db() as session, session.begin():
        assert await uploads.prune(session, idle) is False


async def test_a_late_heartbeat_never_loses_a_session(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    """A replica whose heartbeat is late (overloaded, not gone) stops counting its sessions,
    but a reservation by the same owner elsewhere does not delete them: the client's next
    request on one, through any replica, still finds it its own."""
    gone_after = timedelta(seconds=15)
    here = Holder(HERE.replica, gone_after)
    late = Holder("replica-2", gone_after)
    await _beat(db, late)
    assert await reserve(db, limit=2, holder=late, upstream="u1") is not None
    clock.advance(gone_after + timedelta(seconds=1))
    await _beat(db, here)
    assert await reserve(db, limit=2, holder=here) is not None
    async with db() as session:
        assert await uploads.holder(session, "repo/a", "u1") == "alice"


def test_a_session_used_a_moment_ago_is_not_touched_again_after_a_request() -> None:
    """Back-to-back requests on one upload cost no write each to move ``last_seen`` by a few
    milliseconds; one used longer ago than the grace (or through another replica) is."""
    started = time.monotonic()
    assert LastUse(0.05, started).recent(900)
    assert LastUse(0.05, started).fresh(900)
    assert not LastUse(TOUCH_GRACE_SECONDS, started).recent(900)  # too old already
    assert not LastUse(0.05, started - TOUCH_GRACE_SECONDS).recent(900)  # a long request
    assert not LastUse(None, started).recent(900) and not LastUse(None, started).fresh(900)
    assert not LastUse(0.2, started).recent(3)  # a short idle time shortens the grace too
    assert LastUse(250.0, started).fresh(900) and not LastUse(301.0, started).fresh(900)


async def test_finishing_a_session_forgets_the_owners_sessions_gone_idle(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    """An upload broken off (its client started over) goes idle; the owner's next session to
    end takes it out of the table with it, and nobody else's (those are :func:`prune`'s)."""

    async def opened(owner: str, upstream: str) -> None:
        async with db() as session, session.begin():  # no prune: finish() is what is tested
            recorded = await uploads.reserve(
                session, owner, "repo/a", upstream, limit=3, idle=HOUR, holder=HERE
            )
        assert recorded is not None

    await opened("ci", "broken")
    await opened("someone-else", "theirs")
    clock.advance(HOUR + timedelta(seconds=1))
    await opened("ci", "fresh")
    async with db() as session, session.begin():
        await uploads.finish(session, "repo/a", "fresh", ("ci", HOUR))
    async with db() as session:
        left = set((await session.scalars(select(UploadSession.session))).all())
    assert left == {"theirs"}


async def test_completing_an_upload_makes_its_blob_fresh_and_ends_its_session(
    db: async_sessionmaker[Any], clock: Clock
) -> None:
    """What a closing ``PUT`` writes before its client hears the upload is complete: the blob
    fresh for reading back, the session over with the owner's gone idle. Run as the proxy runs
    it, outside a transaction on PostgreSQL (one statement), so a write that did not commit
    shows here."""

    async def opened(owner: str, upstream: str) -> None:
        async def one(session: Any) -> int | None:  # no prune: complete() is what is tested
            return await uploads.reserve(
                session, owner, "repo/a", upstream, limit=3, idle=HOUR, holder=HERE
            )

        assert await commit_one(db, one) is not None

    await opened("ci", "broken")
    await opened("someone-else", "theirs")
    clock.advance(HOUR + timedelta(seconds=1))
    await opened("ci", "closing")
    digest = "sha256:" + "c" * 64

    async def complete(session: Any) -> None:
        await uploads.complete(session, "repo/a", digest, "closing", ("ci", HOUR))

    await commit_one(db, complete)
    async with db() as session:
        left = set((await session.scalars(select(UploadSession.session))).all())
        assert await fresh_uploads.fresh(session, "repo/a", digest)
        assert not await fresh_uploads.fresh(session, "repo/b", digest)
    assert left == {"theirs"}


async def test_a_reservation_outside_a_transaction_still_counts_to_the_cap(
    db: async_sessionmaker[Any],
) -> None:
    """The POST's reservation as the proxy runs it (``commit_one``: on PostgreSQL one
    statement outside a transaction): committed, and exact under concurrency."""

    async def one(session: Any) -> int | None:
        return await uploads.reserve(
            session, "alice", "repo/a", next(_UPSTREAM), limit=5, idle=HOUR, holder=HERE
        )

    results = await asyncio.gather(*(commit_one(db, one) for _ in range(30)))
    assert len([r for r in results if r is not None]) == 5
    async with db() as session:
        assert await uploads.live_count(session, "alice", HOUR, HERE) == 5
