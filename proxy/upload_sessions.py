"""Whose blob upload sessions are, and how many each may hold.

A session belongs to the identity that opened it (anonymous clients: their address) and to the
repository it was opened in. The upload URL the registry hands out is a bearer capability: its
``_state`` is signed by the registry, but says nothing about who may use it, so anyone who saw
a ``Location`` (a log, a shared CI cache, a proxy) could append to another identity's upload or
finish it with content of their own. Every request on a session is therefore checked against
the row the opening ``POST`` wrote (``storage.uploads``); any other caller gets the same
``BLOB_UPLOAD_UNKNOWN`` as for a session that does not exist (so a URL reveals nothing), and the
refusal's access-log row names the reason.

The same rows carry the per-identity cap (``uploads.max_sessions_per_identity``) on every
replica: the session the upstream opened for a POST is recorded, counted against the cap in
the same statement, before the client hears of it; a completed, cancelled or unknown session
frees its slot, and a session idle for ``uploads.session_idle_seconds`` stops counting and is
forgotten: its owner must start it again (404 ``BLOB_UPLOAD_UNKNOWN``, as the spec allows for
an expired upload). A chunk still streaming keeps its session alive.

One write transaction per POST, after the upstream answered: a slot reserved before asking
and bound to the upstream's session after was two, and on SQLite every write transaction
waits for the host's one write turn (most of an upload's latency under load). On PostgreSQL
it is one statement outside a transaction (``storage.uploads.reserve``): one round trip.
One process still never asks the upstream beyond the cap: an identity's POSTs are admitted
one at a time, each for a read of the sessions it holds (no write turn), and go upstream only
while those and its POSTs in flight here stay under the cap (:func:`opening`); while a recent
read leaves it far below the cap, without reading again. Across processes and replicas the
recording decides: a POST that loses the race for the last slot has the session it opened
cancelled upstream before it is answered 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oci.errors import Code, OCIError
from proxy.context import info
from proxy.errors import database_unavailable
from proxy.state import services
from storage import uploads
from storage.db import DATABASE_ERRORS
from storage.replicas import Holder
from storage.timeutil import now
from storage.writer import commit_one, read, transact

log = logging.getLogger("gatekeeper.uploads")
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


PRUNE_SECONDS = 5.0
"""How often a process forgets other identities' idle rows while the last batch was not
full; a full batch (a backlog, or many identities at once) prunes again on the next
session recorded, so the tables stay bounded however fast rows are made."""


class PruneClock:
    """When this process next prunes (``storage.uploads.prune``) beside recording a session."""

    def __init__(self, every: float = PRUNE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._every = every
        self._clock = clock
        self._next = clock()

    def due(self) -> bool:
        return self._clock() >= self._next

    def done(self, *, more: bool) -> None:
        self._next = self._clock() + (0.0 if more else self._every)


@dataclass
class _Opening:
    """One identity's POSTs in this process, while any is being admitted or is in flight."""

    admitting: asyncio.Lock = field(default_factory=asyncio.Lock)
    in_flight: int = 0
    """Admitted and not yet over: each may take a slot the table does not show yet."""
    ended: int = 0
    """How many have ended (an admission reading the table meanwhile may have missed their
    rows, or may not: it counts them)."""
    users: int = 0
    """POSTs waiting for admission, being admitted or in flight: the entry is dropped (the
    memory stays bounded) only when none is left, never under one that still counts on it."""


KNOWN_SECONDS = 1.0
"""How long what an admission read stays good enough to admit without reading again, while
it leaves the identity far below its cap (:func:`opening`)."""
REMEMBERED_AT_MOST = 10_000
"""Identities whose last admission read, and sessions whose last use, each memory keeps at
most: beyond, it forgets everything (each is read again), so it stays bounded however many
identities come or sessions are abandoned."""


@dataclass
class _Known:
    """What an identity's last admission read said, and what was admitted here since."""

    bound: int
    """Sessions it may hold at most, as far as this process knows: the table's count at the
    read, its POSTs in flight or ended during the read, and every POST admitted since."""
    at: float
    """``time.monotonic()`` of the read."""


USED_SECONDS = 1.0
"""How long what this process last read or wrote of a session's row answers for it (at most
a thirtieth of the idle timeout): a chunk or the closing ``PUT`` a moment after the ``POST``
that recorded the session does not read the row again (:func:`require_owner`)."""


@dataclass
class _Used:
    """A session this process recorded, or read as its caller's, and when."""

    owner: str
    seen: float
    """``time.monotonic()`` when its row's ``last_seen`` was set, as this process knows."""
    confirmed: float
    """``time.monotonic()`` when this process last wrote or read the row."""


@dataclass
class _Remembered:
    """What one app's POSTs keep between requests."""

    pruning: PruneClock = field(default_factory=PruneClock)
    forgetting: PruneClock = field(default_factory=PruneClock)
    """When a closing ``PUT`` next forgets a batch of stale fresh uploads (one statement in
    the write transaction of every upload before: ``storage.fresh_uploads.remember``)."""
    opening: dict[str, _Opening] = field(default_factory=dict)
    known: dict[str, _Known] = field(default_factory=dict)
    used: dict[tuple[str, str], _Used] = field(default_factory=dict)

    def know(self, who: str, known: _Known) -> None:
        _bounded(self.known)[who] = known

    def use(self, key: tuple[str, str], used: _Used) -> None:
        _bounded(self.used)[key] = used


def _bounded(memory: dict[K, V]) -> dict[K, V]:
    """``memory``, emptied first if it holds :data:`REMEMBERED_AT_MOST` entries."""
    if len(memory) >= REMEMBERED_AT_MOST:
        memory.clear()
    return memory


_remembered: weakref.WeakKeyDictionary[object, _Remembered] = weakref.WeakKeyDictionary()


def _kept(owner: object) -> _Remembered:
    """One per app (keyed by its presence, which lives as long as the app)."""
    kept = _remembered.get(owner)
    if kept is None:
        kept = _remembered[owner] = _Remembered()
    return kept


def holder(request: web.Request) -> Holder:
    """This replica, as the holder of the sessions it serves: a session of a replica that has
    stopped or crashed stops counting against its owner's cap (``storage.replicas``)."""
    return services(request).presence.holder


def owner(request: web.Request) -> str:
    """Whom a session belongs to: the identity, or the client address for anonymous clients."""
    identity = info(request).identity
    return f"anonymous@{request.remote}" if identity == "anonymous" else identity


def idle_of(request: web.Request) -> tuple[str, timedelta]:
    """The caller's sessions that count as gone idle: ``storage.uploads.finish`` forgets them
    with the one it ends."""
    return owner(request), timedelta(
        seconds=services(request).settings.uploads.session_idle_seconds
    )


@dataclass(frozen=True)
class _Cap:
    """The caller's cap, as a POST weighs it."""

    who: str
    limit: int
    idle: timedelta
    replica: Holder
    db: async_sessionmaker[Any]
    kept: _Remembered

    @classmethod
    def of(cls, request: web.Request) -> _Cap:
        svc = services(request)
        limits = svc.settings.uploads
        return cls(
            owner(request),
            limits.max_sessions_per_identity,
            timedelta(seconds=limits.session_idle_seconds),
            svc.presence.holder,
            svc.db,
            _kept(svc.presence),
        )


def _too_many(who: str, limit: int) -> OCIError:
    return OCIError(
        Code.TOO_MANY_REQUESTS,
        f"{who} already has {limit} open upload sessions; "
        "finish or cancel one (DELETE its upload URL) before starting another",
        {"limit": limit},
        headers={"Retry-After": "10"},
    )


@contextlib.asynccontextmanager
async def opening(request: web.Request) -> AsyncIterator[None]:
    """Around a POST's upstream request: 429 at once, the upstream not asked, unless the
    sessions the caller holds (the table, read) and its POSTs in flight in this process stay
    under its cap. One identity's admissions here take turns (for a read each, not for the
    upstream's answer), so within a process the upstream never opens a session beyond the
    cap; across processes :func:`record` decides, and the loser's session is cancelled. A
    read less than :data:`KNOWN_SECONDS` old that, with every POST admitted here since,
    leaves the caller under half its cap admits without another (:func:`_far_below`)."""
    cap = _Cap.of(request)
    who, limit, kept = cap.who, cap.limit, cap.kept
    entry = kept.opening.setdefault(who, _Opening())
    entry.users += 1
    try:
        async with entry.admitting:
            known = kept.known.get(who)
            if known is None or not _far_below(known, limit):
                known = await _read_bound(cap, entry)
                if known.bound >= limit:
                    raise _too_many(who, limit)
            known.bound += 1
            entry.in_flight += 1
        try:
            yield
        finally:
            entry.in_flight -= 1
            entry.ended += 1
    finally:
        entry.users -= 1
        if entry.users == 0:
            del kept.opening[who]


def _far_below(known: _Known, limit: int) -> bool:
    """Whether a POST may be admitted on the last read, without reading again: the read is
    recent and, with this POST, the identity stays under half its cap. Under a steady stream
    of one identity's POSTs (a CI fleet behind one robot account) the read was most of a
    POST's time on PostgreSQL: each took its turn for it. What another process admitted since
    the read is not counted here; the recording still counts everything (:func:`record`), so
    such a race ends as it does across processes anyway: the upstream session cancelled, 429."""
    fresh = time.monotonic() - known.at < KNOWN_SECONDS
    return fresh and known.bound + 1 <= limit // 2


async def _read_bound(cap: _Cap, entry: _Opening) -> _Known:
    """Read the sessions the identity holds, and remember the bound it gives with this
    process's POSTs (in flight, or ended while the table was read: their rows may be missing
    from it)."""
    ended = entry.ended
    held = await read(
        cap.db, lambda session: uploads.live_count(session, cap.who, cap.idle, cap.replica)
    )
    racing = entry.ended - ended
    known = _Known(held + racing + entry.in_flight, time.monotonic())
    cap.kept.know(cap.who, known)
    return known


async def record(request: web.Request, name: str, upstream_session: str) -> None:
    """Record the session the upstream opened as the caller's, in one write transaction that
    counts it against the cap (and now and then forgets other identities' idle rows); 429
    when the cap is reached (nothing recorded). Unlike the other bookkeeping this must not
    fail quietly: an unrecorded session belongs to nobody, so its owner could not use it."""
    cap = _Cap.of(request)
    who, limit, idle, kept = cap.who, cap.limit, cap.idle, cap.kept
    prune = kept.pruning.due()

    async def work(session: AsyncSession) -> tuple[int | None, bool]:
        # In the writer thread (storage.writer): only the values captured here.
        recorded = await uploads.reserve(
            session,
            who,
            name,
            upstream_session,
            limit=limit,
            idle=idle,
            holder=cap.replica,
        )
        return recorded, prune and await uploads.prune(session, idle)

    try:
        # The reservation alone is one statement on PostgreSQL: no transaction around it.
        recorded, more = await (transact if prune else commit_one)(cap.db, work)
    except DATABASE_ERRORS as exc:
        log.warning("could not record upload session %s: %s", upstream_session, exc)
        raise database_unavailable(exc) from exc
    if prune:
        kept.pruning.done(more=more)
    if recorded is None:
        raise _too_many(who, limit)
    moment = time.monotonic()
    kept.use((name, upstream_session), _Used(who, moment, moment))


def ended(request: web.Request, name: str, upstream_session: str) -> None:
    """The session is over here (completed, cancelled, unknown upstream): what this process
    remembers of it goes too."""
    _kept(services(request).presence).used.pop((name, upstream_session), None)


async def bookkeep(
    request: web.Request,
    step: Callable[..., Awaitable[T]],
    *args: object,
    one_statement: bool = False,
) -> T | None:
    """Update the session table after the upstream answered; what ``step`` returned, or None
    when it failed. The client already has that answer, so a database failure here is
    logged, not raised: at worst a slot stays taken until it goes idle and expires.
    ``one_statement``: ``step`` runs exactly one (``storage.writer.commit_one``)."""
    run = commit_one if one_statement else transact
    try:
        return await run(services(request).db, lambda session: step(session, *args))
    except DATABASE_ERRORS as exc:
        log.warning("upload session bookkeeping (%s) failed: %s", step.__name__, exc)
        return None


async def touched(request: web.Request, name: str, upstream_session: str) -> None:
    """A request used the session: it is not idle, and this replica serves it now (one
    statement, ``storage.uploads.touch``; a failure is logged, as :func:`bookkeep` says)."""
    await bookkeep(
        request, uploads.touch, name, upstream_session, holder(request), one_statement=True
    )


def forgetting(request: web.Request) -> PruneClock:
    """When this process's closing ``PUT`` next forgets stale fresh uploads."""
    return _kept(services(request).presence).forgetting


TOUCH_GRACE_SECONDS = 1.0
"""A session whose recorded last use is younger than this (and than a thirtieth of the idle
timeout) when a request on it ends is not touched again: back-to-back chunks and the closing
``PUT`` of one upload would each cost a write transaction to move ``last_seen`` by a few
milliseconds. The idle timeout then counts from at most this much before the last request."""


@dataclass(frozen=True)
class LastUse:
    """How recently this replica recorded a use of a session, as a request on it began."""

    age: float | None
    """Seconds since then; None: another replica served it last (or none is recorded)."""
    checked: float
    """``time.monotonic()`` when the table was read."""

    def fresh(self, idle: float) -> bool:
        """Used within a third of the idle time: the keep-alive's first touch comes before it
        could go idle, so a chunk need not touch it first. Each touch is a write transaction,
        and on SQLite every write transaction takes its turn behind all the others."""
        return self.age is not None and self.age < idle / 3

    def recent(self, idle: float) -> bool:
        """Still within :data:`TOUCH_GRACE_SECONDS` now: no touch needed after the request."""
        if self.age is None:
            return False
        return self.age + (time.monotonic() - self.checked) < min(TOUCH_GRACE_SECONDS, idle / 30)


async def require_owner(request: web.Request, name: str, upstream_session: str) -> LastUse:
    """Refuse, as if it did not exist, a session the caller did not open in ``name``. A database
    that cannot answer refuses too (503): the gate fails closed. Returns how recently this
    replica used it (``kept_alive`` and the touch after the request need not write when it
    was a moment ago). The row is not read again within :data:`USED_SECONDS` of this process
    recording or reading it as the caller's: on PostgreSQL under load each read was 40 ms of
    a chunk's or a closing ``PUT``'s time."""
    svc = services(request)
    who = owner(request)
    kept = _kept(svc.presence)
    idle_seconds = svc.settings.uploads.session_idle_seconds
    used = kept.used.get((name, upstream_session))
    checked = time.monotonic()
    if (
        used is not None
        and used.owner == who
        and checked - used.confirmed < min(USED_SECONDS, idle_seconds / 30)
        and checked - used.seen < idle_seconds
    ):
        # Recorded or read here a moment ago: a session's owner never changes, and a row
        # another process deleted since (its session finished or cancelled there) is a
        # session the registry no longer has either (it answers 404).
        return LastUse(checked - used.seen, checked)
    row = await read(svc.db, lambda session: uploads.opened(session, name, upstream_session))
    checked = time.monotonic()
    idle = timedelta(seconds=idle_seconds)
    if row is not None and row.last_seen < now() - idle:
        # Gone idle: forgotten, whether or not its row was deleted yet (the owner's next
        # session to end, or a prune, deletes it). Its owner starts the upload again.
        row, gone_idle = None, True
    else:
        gone_idle = False
    holder = row.owner if row is not None else None
    if row is not None and holder == who:
        if row.replica != svc.presence.holder.replica:
            return LastUse(None, checked)
        age = max((now() - row.last_seen).total_seconds(), 0.0)
        kept.use((name, upstream_session), _Used(who, checked - age, checked))
        return LastUse(age, checked)
    if holder:
        why = f"it is {holder}'s"
    elif gone_idle:
        why = "idle too long: forgotten"
    else:
        why = "unknown, finished or expired"
    record = info(request)
    record.decision = "deny"
    record.reason = f"upload session {upstream_session} is not one {who} opened in {name} ({why})"
    raise OCIError(
        Code.BLOB_UPLOAD_UNKNOWN,
        f"upload session {upstream_session} is not known in {name}",
        {"session": upstream_session},
    )


@contextlib.asynccontextmanager
async def kept_alive(
    request: web.Request, name: str, upstream_session: str, last_use: LastUse
) -> AsyncIterator[None]:
    """While a chunk streams, touch its session now and then, so a chunk that takes longer than
    the idle timeout does not lose the session it is being written to."""
    idle = services(request).settings.uploads.session_idle_seconds
    if not last_use.fresh(idle):
        await touched(request, name, upstream_session)

    async def keep() -> None:
        while True:
            await touched(request, name, upstream_session)
            await asyncio.sleep(idle / 3)

    # A timer, not a task sleeping from the start: a chunk shorter than a third of the idle
    # time (nearly all) cancels it without waiting, where awaiting a cancelled task cost every
    # PATCH and closing PUT a turn of the serving loop (p50 ~30 ms under the load test).
    keeping: list[asyncio.Task[None]] = []
    timer = asyncio.get_running_loop().call_later(
        idle / 3, lambda: keeping.append(asyncio.create_task(keep()))
    )
    try:
        yield
    finally:
        timer.cancel()
        for task in keeping:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
