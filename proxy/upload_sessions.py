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


_clocks: weakref.WeakKeyDictionary[object, PruneClock] = weakref.WeakKeyDictionary()


def _pruning(owner: object) -> PruneClock:
    """One clock per app (keyed by its presence, which lives as long as the app)."""
    clock = _clocks.get(owner)
    if clock is None:
        clock = _clocks[owner] = PruneClock()
    return clock


def holder(request: web.Request) -> Holder:
    """This replica, as the holder of the sessions it serves: a session of a replica that has
    stopped or crashed stops counting against its owner's cap (``storage.replicas``)."""
    return services(request).presence.holder


def owner(request: web.Request) -> str:
    """Whom a session belongs to: the identity, or the client address for anonymous clients."""
    identity = info(request).identity
    return f"anonymous@{request.remote}" if identity == "anonymous" else identity


async def reserve(request: web.Request, name: str) -> int:
    """A slot for one more session, or 429: the upstream is never asked beyond the cap."""
    svc = services(request)
    limits = svc.settings.uploads
    who = owner(request)
    idle = timedelta(seconds=limits.session_idle_seconds)
    # A read first: a client hammering at its limit is refused without taking the write lock
    # (a stale count can only refuse early, never admit beyond the limit).
    replica = svc.presence.holder
    held = await read(svc.db, lambda session: uploads.live_count(session, who, idle, replica))
    reservation = None
    if held < limits.max_sessions_per_identity:
        pruning = _pruning(svc.presence)
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


async def require_owner(request: web.Request, name: str, upstream_session: str) -> bool:
    """Refuse, as if it did not exist, a session the caller did not open in ``name``. A database
    that cannot answer refuses too (503): the gate fails closed. True if the session was used
    through this replica a moment ago (``kept_alive`` need not touch it first)."""
    svc = services(request)
    row = await read(svc.db, lambda session: uploads.opened(session, name, upstream_session))
    who = owner(request)
    holder = row.owner if row is not None else None
    if row is not None and holder == who:
        # Touched by this replica within a third of the idle time (the previous request on
        # it just ended): the keep-alive's first touch comes before it could go idle, so the
        # chunk need not touch it first. Each touch is a write transaction, and on SQLite
        # every write transaction takes its turn behind all the others.
        third = timedelta(seconds=svc.settings.uploads.session_idle_seconds / 3)
        return row.replica == svc.presence.holder.replica and row.last_seen >= now() - third
    record = info(request)
    record.decision = "deny"
    record.reason = f"upload session {upstream_session} is not one {who} opened in {name}" + (
        f" (it is {holder}'s)" if holder else " (unknown, finished or expired)"
    )
    raise OCIError(
        Code.BLOB_UPLOAD_UNKNOWN,
        f"upload session {upstream_session} is not known in {name}",
        {"session": upstream_session},
    )


@contextlib.asynccontextmanager
async def kept_alive(
    request: web.Request, name: str, upstream_session: str, *, fresh: bool = False
) -> AsyncIterator[None]:
    """While a chunk streams, touch its session now and then, so a chunk that takes longer than
    the idle timeout does not lose the session it is being written to."""
    idle = services(request).settings.uploads.session_idle_seconds
    if not fresh:  # see require_owner
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
