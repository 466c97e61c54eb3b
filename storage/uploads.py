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
    Select,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from storage import fresh_uploads
from storage.models import UploadOwner, UploadSession
from storage.prepared import Prepared, deleted, dialect_of, table, upserting
from storage.replicas import Holder, heard_since
from storage.timeutil import UTCDateTime, now

NO_SYNC = {"synchronize_session": False}


_SESSIONS = table(UploadSession)

_HELD: Select[Any] = (
    select(func.count())
    .select_from(_SESSIONS)
    .where(
        _SESSIONS.c.owner == bindparam("owner"),
        _SESSIONS.c.last_seen >= bindparam("used_since"),
        or_(
            # Held by a replica still there, or by none recorded: a session made before
            # replicas were tracked.
            _SESSIONS.c.replica.is_(None),
            heard_since(_SESSIONS.c.replica, bindparam("heard_since")),
        ),
    )
)
"""SQL: how many sessions ``owner`` holds that count against its cap: used within the idle
timeout, held by a replica still there. Built once (``storage.prepared``). PostgreSQL's
reservation counts the same in SQL of its own (migration 0022): keep the two alike."""


def _held_params(owner: str, holder: Holder, idle: timedelta, moment: datetime) -> dict[str, Any]:
    return {
        "owner": owner,
        "used_since": moment - idle,
        "heard_since": moment - holder.gone_after,
    }


_RESERVE = (
    insert(_SESSIONS)
    .from_select(
        ["owner", "repository", "session", "last_seen", "replica"],
        select(
            bindparam("owner", type_=_SESSIONS.c.owner.type),
            bindparam("new_repository", type_=_SESSIONS.c.repository.type),
            bindparam("new_session", type_=_SESSIONS.c.session.type),
            bindparam("moment", type_=_SESSIONS.c.last_seen.type),
            bindparam("new_replica", type_=_SESSIONS.c.replica.type),
        ).where(_HELD.scalar_subquery() < bindparam("limit")),
    )
    .returning(_SESSIONS.c.id)
)

_RESERVE_IN_ONE = select(
    func.gatekeeper_reserve_upload(
        bindparam("owner", type_=_SESSIONS.c.owner.type),
        bindparam("new_repository", type_=_SESSIONS.c.repository.type),
        bindparam("new_session", type_=_SESSIONS.c.session.type),
        bindparam("moment", type_=UTCDateTime()),
        bindparam("new_replica", type_=_SESSIONS.c.replica.type),
        bindparam("used_since", type_=UTCDateTime()),
        bindparam("heard_since", type_=UTCDateTime()),
        bindparam("limit"),
    )
)
"""PostgreSQL: the owner's lock and the count-and-insert in one statement, a function of
migration 0022's (one round trip; the two statements need a transaction around them)."""

_LOCK_OWNER = Prepared(
    lambda insert_on: upserting(
        insert_on,
        table(UploadOwner),
        ["owner"],
        owner=bindparam("who"),
        touched=bindparam("moment"),
    )
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

    On PostgreSQL one statement, atomic by itself: it may run outside a transaction
    (``storage.writer.commit_one``), one round trip. Elsewhere it must run inside a write
    transaction (``session.begin()``).
    """
    moment = now()
    params = {
        **_held_params(owner, holder, idle, moment),
        "new_repository": repository,
        "new_session": upstream_session,
        "moment": moment,
        "new_replica": holder.replica,
        "limit": limit,
    }
    if dialect_of(session) == "postgresql":
        inserted = await session.scalar(_RESERVE_IN_ONE, params)
        return None if inserted is None else int(inserted)
    await _lock_owner(session, owner, moment)
    # Counted and inserted in one statement, after the owner's row is locked (on PostgreSQL,
    # in the function, likewise: a statement's snapshot is taken when it starts, so counting
    # in the locking statement could miss a reservation committed while it waited for the
    # lock). Idle rows do not count; :func:`prune` forgets them.
    inserted = await session.scalar(_RESERVE, params)
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
    return max(deleted(sessions), deleted(owners)) >= PRUNE_BATCH


async def _lock_owner(session: AsyncSession, owner: str, moment: datetime) -> None:
    """Create or update the owner's row in one statement: the per-identity lock (on SQLite
    the write turn is the lock anyway; PostgreSQL's function does the same upsert, and
    ``INSERT ... ON CONFLICT DO UPDATE`` locks the existing row as an ``UPDATE`` would). One
    statement, not an insert and an update: each is a round trip while the write turn is
    held."""
    await session.execute(_LOCK_OWNER(session), {"who": owner, "moment": moment})


_TOUCH = (
    update(_SESSIONS)
    .where(
        _SESSIONS.c.repository == bindparam("in_repository"),
        _SESSIONS.c.session == bindparam("upstream_session"),
    )
    .values(last_seen=bindparam("moment"), replica=bindparam("holder"))
)


async def touch(
    session: AsyncSession, repository: str, upstream_session: str, holder: Holder
) -> None:
    """A request used the session: it is not idle, and ``holder`` serves it now."""
    await session.execute(
        _TOUCH,
        {
            "in_repository": repository,
            "upstream_session": upstream_session,
            "moment": now(),
            "holder": holder.replica,
        },
    )


_THIS_SESSION = (_SESSIONS.c.repository == bindparam("in_repository")) & (
    _SESSIONS.c.session == bindparam("upstream_session")
)
_FINISH = delete(_SESSIONS).where(_THIS_SESSION)
_FINISH_AND_IDLE = delete(_SESSIONS).where(
    _THIS_SESSION
    | (
        (_SESSIONS.c.owner == bindparam("owner"))
        & (_SESSIONS.c.last_seen < bindparam("used_before"))
    )
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
    this = {"in_repository": repository, "upstream_session": upstream_session}
    if idle is None:
        await session.execute(_FINISH, this)
        return
    owner, timeout = idle
    await session.execute(
        _FINISH_AND_IDLE, {**this, "owner": owner, "used_before": now() - timeout}
    )


_COMPLETE_IN_ONE = fresh_uploads.remembering(postgresql.insert).add_cte(
    _FINISH_AND_IDLE.cte("finished")
)
"""PostgreSQL: the blob remembered as fresh and the session (with its owner's idle ones)
deleted, in one statement (a ``DELETE`` in a ``WITH``): one round trip, atomic by itself."""


async def complete(
    session: AsyncSession,
    repository: str,
    digest: str,
    upstream_session: str,
    idle: tuple[str, timedelta],
) -> None:
    """A closing ``PUT`` succeeded: ``digest`` is fresh in ``repository`` for reading back
    (``storage.fresh_uploads``) and the session is over, its owner's sessions gone idle with
    it (:func:`finish`). On PostgreSQL one statement, which may run outside a transaction
    (``storage.writer.commit_one``): one round trip where the two statements in a
    transaction were four, and the client hears that its upload is complete only after it.
    Elsewhere two statements, inside a write transaction."""
    if dialect_of(session) != "postgresql":
        await fresh_uploads.remember(session, repository, digest, forget_stale=False)
        await finish(session, repository, upstream_session, idle)
        return
    owner, timeout = idle
    moment = now()
    await session.execute(
        _COMPLETE_IN_ONE,
        {
            "in_repository": repository,
            "upstream_session": upstream_session,
            "owner": owner,
            "used_before": moment - timeout,
            "uploaded": digest,
            "moment": moment,
        },
    )


async def live_count(session: AsyncSession, owner: str, idle: timedelta, holder: Holder) -> int:
    """Sessions ``owner`` holds that have not gone idle, of replicas still there."""
    return int(await session.scalar(_HELD, _held_params(owner, holder, idle, now())) or 0)


@dataclass(frozen=True)
class Opened:
    """An upload session as the table knows it."""

    owner: str
    """Who opened it."""
    last_seen: datetime
    """When a request last used it."""
    replica: str | None
    """The replica that served it last (None: made before replicas were tracked)."""


_OPENED = (
    select(_SESSIONS.c.owner, _SESSIONS.c.last_seen, _SESSIONS.c.replica)
    .where(_THIS_SESSION)
    .limit(1)
)


async def opened(session: AsyncSession, repository: str, upstream_session: str) -> Opened | None:
    """Upstream session ``upstream_session`` of ``repository``, or None (see :func:`holder`)."""
    row = (
        await session.execute(
            _OPENED, {"in_repository": repository, "upstream_session": upstream_session}
        )
    ).first()
    return None if row is None else Opened(str(row[0]), row[1], row[2])


async def holder(session: AsyncSession, repository: str, upstream_session: str) -> str | None:
    """Who opened upstream session ``upstream_session`` in ``repository`` (None: nobody, as far
    as the table knows: never opened there, finished, or forgotten after going idle)."""
    row = await opened(session, repository, upstream_session)
    return None if row is None else row.owner
