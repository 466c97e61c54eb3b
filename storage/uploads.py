"""Open blob upload sessions per identity, so the proxy can cap them on every replica at once.

A session's row is written once the upstream has opened it (``proxy.upload_sessions`` keeps
the upstream from being asked beyond the cap meanwhile), and counted against the identity's
limit in the same statement that inserts it. The transaction first writes the
identity's ``upload_owners`` row (one upsert): on PostgreSQL that row lock serialises one identity's
reservations across replicas (other identities are not blocked); on SQLite the write lock taken
by ``BEGIN IMMEDIATE`` serialises them anyway. So two concurrent POSTs can never both see
"one slot left". Sessions idle longer than the timeout stop counting, so a client that
vanishes frees its slots by itself; :func:`prune`, beside a reservation now and then, forgets
a batch of idle sessions and owner rows, so the tables hold only identities seen within the
idle timeout.

Each session also names the replica that served its latest request (``storage.replicas``).
A session of a replica that is gone (stopped, or silent past its heartbeat: crashed) stops
counting at once: its client lost the connection with that replica and starts over, and must
not be refused for the idle timeout because of a session nobody will finish. A request on it
through another replica makes that replica its holder, and it counts again. It is never
deleted for that, only once idle: a replica that is merely late with its heartbeat (an
overloaded host) must not lose the uploads it serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import upsert
from storage.models import UploadOwner, UploadSession
from storage.replicas import Holder
from storage.timeutil import now

NO_SYNC = {"synchronize_session": False}


def _live(holder: Holder, idle: timedelta, moment: datetime) -> ColumnElement[bool]:
    """SQL: a session that counts: used within ``idle``, held by a replica still there (or
    by none recorded: a session made before replicas were tracked)."""
    return (UploadSession.last_seen >= moment - idle) & or_(
        UploadSession.replica.is_(None), holder.alive(UploadSession.replica, moment)
    )


def _held(owner: str, holder: Holder, idle: timedelta, moment: datetime) -> Select[Any]:
    """SQL: how many sessions ``owner`` holds that count against its cap (:func:`_live`)."""
    return (
        select(func.count())
        .select_from(UploadSession)
        .where(UploadSession.owner == owner, _live(holder, idle, moment))
    )


async def reserve(
    session: AsyncSession,
    owner: str,
    repository: str,
    upstream_session: str,
    *,
    limit: int,
    idle: timedelta,
    holder: Holder,
) -> int | None:
    """Record upstream session ``upstream_session`` of ``repository`` as ``owner``'s, held by
    ``holder``: its row's id, or None (nothing written) if ``owner`` already holds ``limit``
    live sessions. Idle rows do not count; :func:`prune` forgets them.

    Must run inside a write transaction (``session.begin()``).
    """
    moment = now()
    await _lock_owner(session, owner, moment)
    # Counted and inserted in one statement, after the owner's row is locked (on PostgreSQL a
    # statement's snapshot is taken when it starts: counting in the locking statement could
    # miss a reservation committed while it waited for the lock). Idle rows do not count;
    # :func:`prune` forgets them.
    held = _held(owner, holder, idle, moment).scalar_subquery()
    values = select(
        literal(owner, UploadSession.owner.type),
        literal(repository, UploadSession.repository.type),
        literal(upstream_session, UploadSession.session.type),
        literal(moment, UploadSession.last_seen.type),
        literal(holder.replica, UploadSession.replica.type),
    ).where(held < limit)
    columns = ["owner", "repository", "session", "last_seen", "replica"]
    inserted = await session.scalar(
        insert(UploadSession).from_select(columns, values).returning(UploadSession.id)
    )
    return None if inserted is None else int(inserted)


PRUNE_BATCH = 100
"""Idle rows one reservation may forget: more than one reservation can create,
so the tables stay bounded, and few enough that a reservation stays cheap."""


async def prune(session: AsyncSession, idle: timedelta) -> bool:
    """Forget idle sessions, and identities holding none, a batch at a time; True if a batch
    was full (more may be waiting).

    Called beside a reservation, in its write transaction, now and then rather than on every
    one (``proxy.upload_sessions``): each statement inside SQLite's one write lock holds up
    every other writer, and with twenty pushers that was most of an upload's latency.

    Without this, every client address that ever pushed anonymously (cheap to have many of with
    IPv6) would keep a row for good. ``SKIP LOCKED``: rows another replica's reservation holds
    are left for later, so a reservation never waits on another identity's (nor deadlocks with
    one). SQLite serialises writers anyway and ignores the clause.
    """
    cutoff = now() - idle
    stale_sessions = (
        select(UploadSession.id)
        .where(UploadSession.last_seen < cutoff)
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    sessions = await session.execute(
        delete(UploadSession)
        .execution_options(**NO_SYNC)
        .where(UploadSession.id.in_(stale_sessions))
    )
    holds = select(UploadSession.id).where(UploadSession.owner == UploadOwner.owner)
    stale = (
        select(UploadOwner.owner)
        .where(UploadOwner.touched < cutoff, ~exists(holds))
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    owners = await session.execute(
        delete(UploadOwner).execution_options(**NO_SYNC).where(UploadOwner.owner.in_(stale))
    )
    return max(_count(sessions), _count(owners)) >= PRUNE_BATCH


def _count(result: Any) -> int:
    """Rows a DELETE removed (``rowcount``; -1, unknown, counts as none)."""
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


async def _lock_owner(session: AsyncSession, owner: str, moment: datetime) -> None:
    """Create or update the owner's row in one statement: the per-identity lock. On
    PostgreSQL ``INSERT ... ON CONFLICT DO UPDATE`` locks the existing row as an ``UPDATE``
    would (a concurrent first insert waits for the other's to commit, then updates it). One
    statement, not an insert and an update: each is a round trip through the event loop while
    the write turn is held, and under load a round trip costs tens of milliseconds."""
    await upsert(session, UploadOwner, ["owner"], owner=owner, touched=moment)


async def touch(
    session: AsyncSession, repository: str, upstream_session: str, holder: Holder
) -> None:
    """A request used the session: it is not idle, and ``holder`` serves it now."""
    await session.execute(
        update(UploadSession)
        .execution_options(**NO_SYNC)
        .where(UploadSession.repository == repository, UploadSession.session == upstream_session)
        .values(last_seen=now(), replica=holder.replica)
    )


async def finish(
    session: AsyncSession,
    repository: str,
    upstream_session: str,
    idle: tuple[str, timedelta] | None = None,
) -> None:
    """The session is over (completed, cancelled, or unknown upstream): its slot is free.
    ``idle``: (owner, idle timeout): the owner's sessions gone idle are forgotten in the same
    statement (an upload broken off, whose client started over), so the table does not keep
    them until a :func:`prune` happens to run."""
    this = (UploadSession.repository == repository) & (UploadSession.session == upstream_session)
    if idle is not None:
        owner, timeout = idle
        this = this | ((UploadSession.owner == owner) & (UploadSession.last_seen < now() - timeout))
    await session.execute(delete(UploadSession).execution_options(**NO_SYNC).where(this))


async def live_count(session: AsyncSession, owner: str, idle: timedelta, holder: Holder) -> int:
    """Sessions ``owner`` holds that have not gone idle, of replicas still there."""
    return int(await session.scalar(_held(owner, holder, idle, now())) or 0)


@dataclass(frozen=True)
class Opened:
    """An upload session as the table knows it."""

    owner: str
    """Who opened it."""
    last_seen: datetime
    """When a request last used it."""
    replica: str | None
    """The replica that served it last (None: made before replicas were tracked)."""


async def opened(session: AsyncSession, repository: str, upstream_session: str) -> Opened | None:
    """Upstream session ``upstream_session`` of ``repository``, or None (see :func:`holder`)."""
    row = (
        await session.execute(
            select(UploadSession.owner, UploadSession.last_seen, UploadSession.replica)
            .where(
                UploadSession.repository == repository, UploadSession.session == upstream_session
            )
            .limit(1)
        )
    ).first()
    return None if row is None else Opened(str(row[0]), row[1], row[2])


async def holder(session: AsyncSession, repository: str, upstream_session: str) -> str | None:
    """Who opened upstream session ``upstream_session`` in ``repository`` (None: nobody, as far
    as the table knows: never opened there, finished, or forgotten after going idle)."""
    owner = await session.scalar(
        select(UploadSession.owner)
        .where(UploadSession.repository == repository, UploadSession.session == upstream_session)
        .limit(1)
    )
    return None if owner is None else str(owner)
