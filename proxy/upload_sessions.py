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
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

from aiohttp import web

from proxy.context import info
from proxy.errors import Code, OCIError
from proxy.state import services
from storage import uploads
from storage.db import DATABASE_ERRORS
from storage.replicas import Holder

log = logging.getLogger("gatekeeper.uploads")


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
    async with svc.db() as session:
        held = await uploads.live_count(session, who, idle, replica)
    reservation = None
    if held < limits.max_sessions_per_identity:
        async with svc.db() as session, session.begin():
            reservation = await uploads.reserve(
                session,
                who,
                name,
                limit=limits.max_sessions_per_identity,
                idle=idle,
                holder=replica,
            )
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
        async with services(request).db() as session, session.begin():
            await uploads.bind(session, reservation, upstream_session, holder(request))
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
        async with services(request).db() as session, session.begin():
            await step(session, *args)
    except DATABASE_ERRORS as exc:
        log.warning("upload session bookkeeping (%s) failed: %s", step.__name__, exc)


async def require_owner(request: web.Request, name: str, upstream_session: str) -> None:
    """Refuse, as if it did not exist, a session the caller did not open in ``name``. A database
    that cannot answer refuses too (503): the gate fails closed."""
    async with services(request).db() as session:
        holder = await uploads.holder(session, name, upstream_session)
    who = owner(request)
    if holder == who:
        return
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
async def kept_alive(request: web.Request, name: str, upstream_session: str) -> AsyncIterator[None]:
    """While a chunk streams, touch its session now and then, so a chunk that takes longer than
    the idle timeout does not lose the session it is being written to."""
    idle = services(request).settings.uploads.session_idle_seconds
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
