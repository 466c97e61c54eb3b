"""``/v2/<name>/blobs/uploads/``: start (monolithic, resumable, cross-repository mount), PATCH
chunks, PUT to close, GET status, DELETE to cancel. Bodies stream straight to the upstream.

The upstream's opaque upload state (``_state``) travels in the query string of the ``Location``
it returns; it is passed back untouched, since only the upstream can read (and verify) it.

Each identity may hold ``uploads.max_sessions_per_identity`` open sessions (anonymous clients
one set per client IP); the count lives in the database (``storage.uploads``) so the cap holds
across replicas. A POST reserves a slot before the upstream is asked, a completed, cancelled or
unknown session frees it, and a session idle for ``uploads.session_idle_seconds`` stops counting,
as does one whose replica has stopped or crashed (``storage.replicas``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp import web

from proxy import gate
from proxy.auth.http import may
from proxy.context import info
from proxy.errors import Code, OCIError
from proxy.handlers.common import forward, repository, scopes
from proxy.names import check_digest, check_name
from proxy.state import services
from proxy.upstream import v2_path
from storage import uploads
from storage.db import DATABASE_ERRORS
from storage.replicas import Holder

log = logging.getLogger("gatekeeper.uploads")

SESSION_RE = re.compile(r"[A-Za-z0-9_.=-]{1,128}")
# The spec's "<start>-<end>"; also the HTTP form "bytes <start>-<end>/<total>" some clients send.
CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?([0-9]{1,18})-([0-9]{1,18})(?:/(?:[0-9]{1,18}|\*))?")
# Query keys an upload URL may carry; anything else is dropped before it reaches the upstream.
UPLOAD_QUERY = frozenset({"_state", "digest"})


def _session(request: web.Request) -> str:
    session = request.match_info["session"]
    if not SESSION_RE.fullmatch(session):
        raise OCIError(
            Code.BLOB_UPLOAD_UNKNOWN, "malformed upload session id", {"session": session[:140]}
        )
    return session


def _digest_query(request: web.Request, key: str = "digest") -> str | None:
    value = request.query.get(key)
    if value is None:
        return None
    digest = check_digest(value)
    info(request).digest = digest
    return digest


async def start(request: web.Request) -> web.StreamResponse:
    """POST: a new upload, a monolithic upload (``?digest=``) or a mount (``?mount=&from=``)."""
    record = info(request)
    name = repository(request)
    params: dict[str, str] = {}
    scope = scopes(name, "pull", "push")
    mount = _digest_query(request, "mount")
    source = request.query.get("from")
    if mount is not None and source is not None and not may(request, check_name(source), "pull"):
        # Like the registry: a mount the caller may not read from becomes a plain upload,
        # which tells nothing about the source repository.
        record.reason = f"mount from {source} not permitted; started a plain upload"
        mount = None
    if mount is not None:
        record.action = "upload.mount"
        params["mount"] = mount
        if source is not None:
            params["from"] = check_name(source)
            record.reference = f"from:{source}"
            scope = (*scope, f"repository:{source}:pull")
            # Mounting is pulling from the source repository: the same gate applies.
            await gate.check_blob(request, source, mount)
    digest = _digest_query(request)
    if digest is not None:
        params["digest"] = digest
        if mount is None:
            record.action = "blob.push"
    if mount is None and digest is None:
        record.action = "upload.start"
    reservation = await _reserve(request, name)
    try:
        response = await forward(
            request,
            v2_path(name, "blobs", "uploads") + "/",
            scope=scope,
            params=params,
            stream_body=True,
        )
    except BaseException:
        await _bookkeep(request, uploads.release, reservation)
        raise
    upstream_session = response.headers.get("Docker-Upload-UUID")
    if response.status == 202 and upstream_session:
        await _bookkeep(request, uploads.bind, reservation, upstream_session, _holder(request))
    else:  # a monolithic upload or a mount ends with the POST; a refusal never started
        await _bookkeep(request, uploads.release, reservation)
    return response


def _holder(request: web.Request) -> Holder:
    """This replica, as the holder of the sessions it serves (``storage.replicas``)."""
    return services(request).presence.holder


def _owner(request: web.Request) -> str:
    """Whom the session cap counts: the identity, or the client IP for anonymous clients."""
    identity = info(request).identity
    return f"anonymous@{request.remote}" if identity == "anonymous" else identity


async def _reserve(request: web.Request, name: str) -> int:
    """A slot for one more session, or 429: the upstream is never asked beyond the cap."""
    svc = services(request)
    limits = svc.settings.uploads
    owner = _owner(request)
    idle = timedelta(seconds=limits.session_idle_seconds)
    # A read first: a client hammering at its limit is refused without taking the write lock
    # (a stale count can only refuse early, never admit beyond the limit).
    async with svc.db() as session:
        held = await uploads.live_count(session, owner, idle, svc.presence.holder)
    full = held >= limits.max_sessions_per_identity
    reservation = None
    if not full:
        async with svc.db() as session, session.begin():
            reservation = await uploads.reserve(
                session,
                owner,
                name,
                limit=limits.max_sessions_per_identity,
                idle=idle,
                holder=svc.presence.holder,
            )
    if reservation is None:
        raise OCIError(
            Code.TOO_MANY_REQUESTS,
            f"{owner} already has {limits.max_sessions_per_identity} open upload sessions; "
            "finish or cancel one (DELETE its upload URL) before starting another",
            {"limit": limits.max_sessions_per_identity},
            headers={"Retry-After": "10"},
        )
    return reservation


async def _bookkeep(
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


def _params(request: web.Request) -> dict[str, str]:
    return {k: v for k, v in request.query.items() if k in UPLOAD_QUERY}


async def _session_call(request: web.Request, action: str, body: bool) -> web.StreamResponse:
    info(request).action = action
    name = repository(request)
    session = _session(request)
    if action == "blob.push":
        _digest_query(request)
        if "digest" not in request.query:
            raise OCIError(Code.DIGEST_INVALID, "closing an upload needs ?digest=")
    if body:  # a long chunk is activity from its start, not only once it is done
        await _bookkeep(request, uploads.touch, name, session, _holder(request))
    response = await forward(
        request,
        v2_path(name, "blobs", "uploads", session),
        scope=scopes(name, "pull", "push"),
        params=_params(request),
        stream_body=body,
    )
    if response.status == 404 or (action, response.status) in _SESSION_OVER:
        await _bookkeep(request, uploads.finish, name, session)
    elif response.status < 300:
        await _bookkeep(request, uploads.touch, name, session, _holder(request))
    return response


# The answers after which the upstream holds no session any more.
_SESSION_OVER = frozenset({("blob.push", 201), ("upload.cancel", 204)})


async def _check_chunk_start(request: web.Request) -> None:
    """A chunk's ``Content-Range`` must start where the upload ends (the spec's 416).

    The registry does not check this itself: it appends an overlapping or out-of-order chunk
    and reports the sum as the upload's range, so the session no longer holds what the client
    believes it sent. One status request upstream tells where the upload ends. Its ``Range`` is
    ``0-0`` both for an empty upload and for one byte, so that offset accepts 0 or 1.
    """
    raw = request.headers.get("Content-Range")
    if raw is None:
        return
    match = CONTENT_RANGE_RE.fullmatch(raw.strip())
    if match is None or int(match[2]) < int(match[1]):
        # The registry would ignore it and append the chunk wherever the upload ends.
        raise OCIError(
            Code.RANGE_INVALID,
            "Content-Range must be <start>-<end> with start <= end",
            {"content_range": raw[:60]},
        )
    start = int(match[1])
    name, session = repository(request), _session(request)
    resp = await services(request).upstream.request(
        "GET",
        v2_path(name, "blobs", "uploads", session),
        scopes=scopes(name, "pull", "push"),
        params=_params(request),
    )
    try:
        held = CONTENT_RANGE_RE.fullmatch(resp.headers.get("Range", ""))
        if resp.status != 204 or held is None:
            return  # the PATCH itself will relay the registry's answer (unknown session, ...)
        end = int(held[2])
        allowed = (0, 1) if end == 0 else (end + 1,)
    finally:
        resp.release()
    if start not in allowed:
        raise OCIError(
            Code.RANGE_INVALID,
            f"chunk starts at byte {start}, but the next byte of the upload is {allowed[-1]}",
            {"content_range": raw[:60], "upload_range": f"0-{end}"},
        )


async def patch(request: web.Request) -> web.StreamResponse:
    info(request).action = "upload.chunk"
    await _check_chunk_start(request)
    return await _session_call(request, "upload.chunk", body=True)


async def put(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "blob.push", body=True)


async def status(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "upload.status", body=False)


async def cancel(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "upload.cancel", body=False)
