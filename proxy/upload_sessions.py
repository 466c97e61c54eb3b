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
replica: a POST reserves a slot before the upstream is asked, a completed, cancelled or unknown
session frees it, and a session idle for ``uploads.session_idle_seconds`` stops counting and is
forgotten: its owner must start it again (404 ``BLOB_UPLOAD_UNKNOWN``, as the spec allows for
an expired upload). A chunk still streaming keeps its session alive.
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
from functools import partial

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from oci.errors import Code, OCIError
from proxy.context import info
from proxy.state import services
from storage import uploads
from storage.db import DATABASE_ERRORS
from storage.replicas import Holder
from storage.timeutil import now
from storage.writer import read, transact

log = logging.getLogger("gatekeeper.uploads")


PRUNE_SECONDS = 5.0
"""How often a process forgets other identities' idle rows while the last batch was not
full; a full batch (a backlog, or many identities at once) prunes again on the next
reservation, so the tables stay bounded however fast rows are made."""


class PruneClock:
    """When this process next prunes (``storage.uploads.prune``) beside a reservation."""

    def __init__(self, every: float = PRUNE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._every = every
        self._clock = clock
        self._next = clock()

    def due(self) -> bool:
        return self._clock() >= self._next

    def done(self, *, more: bool) -> None:
        self._next = self._clock() + (0.0 if more else self._every)


REFUSED_MEMORY_SECONDS = 10.0
"""How long this process remembers refusing an identity a slot (see :class:`Refusals`)."""


class Refusals:
    """Identities this process refused a slot lately. Only their ``POST``s read the count
    before the write transaction, so a client hammering at its limit is refused without taking
    the write turn; everyone else goes straight to the reservation (which counts anyway), one
    hand-over to the writer thread fewer per upload."""

    def __init__(
        self,
        remember: float = REFUSED_MEMORY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        size: int = 4096,
    ) -> None:
        self._remember, self._clock, self._size = remember, clock, size
        self._at: dict[str, float] = {}

    def recent(self, who: str) -> bool:
        at = self._at.get(who)
        return at is not None and self._clock() - at < self._remember

    def refused(self, who: str) -> None:
        if len(self._at) >= self._size:  # bounded: many identities at once start over
            self._at.clear()
        self._at[who] = self._clock()


@dataclass
class _Remembered:
    """What one app's reservations keep between requests."""

    pruning: PruneClock = field(default_factory=PruneClock)
    refusals: Refusals = field(default_factory=Refusals)


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


async def reserve(request: web.Request, name: str) -> int:
    """A slot for one more session, or 429: the upstream is never asked beyond the cap."""
    svc = services(request)
    limits = svc.settings.uploads
    who = owner(request)
    idle = timedelta(seconds=limits.session_idle_seconds)
    replica = svc.presence.holder
    kept = _kept(svc.presence)
    refusals = kept.refusals
    held = 0
    if refusals.recent(who):
        # A read first: a client hammering at its limit is refused without taking the write
        # turn (a stale count can only refuse early, never admit beyond the limit).
        held = await read(svc.db, lambda session: uploads.live_count(session, who, idle, replica))
    reservation = None
    if held < limits.max_sessions_per_identity:
        pruning = kept.pruning
        prune = pruning.due()

        async def work(session: AsyncSession) -> tuple[int | None, bool]:
            # In the writer thread (storage.writer): only the values captured here.
            reservation = await uploads.reserve(
                session,
                who,
                name,
                limit=limits.max_sessions_per_identity,
                idle=idle,
                holder=replica,
            )
            return reservation, prune and await uploads.prune(session, idle)

        reservation, more = await transact(svc.db, work)
        if prune:
            pruning.done(more=more)
    if reservation is None:
        refusals.refused(who)
        raise OCIError(
            Code.TOO_MANY_REQUESTS,
            f"{who} already has {limits.max_sessions_per_identity} open upload sessions; "
            "finish or cancel one (DELETE its upload URL) before starting another",
            {"limit": limits.max_sessions_per_identity},
            headers={"Retry-After": "10"},
        )
    return reservation


async def bind(request: web.Request, reservation: int, upstream_session: str) -> None:
    """Record which upstream session the slot holds. Unlike the other bookkeeping this must not
    fail quietly: an unrecorded session belongs to nobody, so its owner could not use it."""
    try:
        await transact(
            services(request).db,
            partial(
                uploads.bind,
                reservation=reservation,
                upstream_session=upstream_session,
                holder=holder(request),
            ),
        )
    except DATABASE_ERRORS as exc:
        log.warning("could not record upload session %s: %s", upstream_session, exc)
        raise OCIError(
            Code.UNAVAILABLE,
            "the gatekeeper could not record the upload session; start the upload again",
        ) from exc


async def bookkeep(
    request: web.Request, step: Callable[..., Awaitable[None]], *args: object
) -> None:
    """Update the session table after the upstream answered. The client already has that
    answer, so a database failure here is logged, not raised: at worst a slot stays taken
    until it goes idle and expires."""
    try:
        await transact(services(request).db, lambda session: step(session, *args))
    except DATABASE_ERRORS as exc:
        log.warning("upload session bookkeeping (%s) failed: %s", step.__name__, exc)


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
    was a moment ago)."""
    svc = services(request)
    row = await read(svc.db, lambda session: uploads.opened(session, name, upstream_session))
    checked = time.monotonic()
    who = owner(request)
    idle = timedelta(seconds=svc.settings.uploads.session_idle_seconds)
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
        return LastUse(max((now() - row.last_seen).total_seconds(), 0.0), checked)
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
        await bookkeep(request, uploads.touch, name, upstream_session, holder(request))

    async def keep() -> None:
        while True:
            await asyncio.sleep(idle / 3)
            await bookkeep(request, uploads.touch, name, upstream_session, holder(request))

    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
