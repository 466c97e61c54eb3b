"""``/v2/<name>/blobs/uploads/``: start (monolithic, resumable, cross-repository mount), PATCH
chunks, PUT to close, GET status, DELETE to cancel. Bodies stream straight to the upstream.

The upstream's opaque upload state (``_state``) travels in the query string of the ``Location``
it returns; it is passed back untouched, since only the upstream can read (and verify) it.

A session belongs to whoever opened it, in the repository it was opened in; anyone else using
its URL gets ``BLOB_UPLOAD_UNKNOWN``. Each identity may hold ``uploads.max_sessions_per_identity``
open sessions; one whose replica has stopped or crashed stops counting (``storage.replicas``).
Both live in the database, so they hold across replicas (``proxy/upload_sessions.py``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import timedelta

import aiohttp
import yarl
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from oci.errors import Code, OCIError
from oci.grammar import is_repository_name
from proxy import gate, upload_offset
from proxy import upload_sessions as sessions
from proxy.auth.http import caller, insufficient_scope, may, pullable_by_caller
from proxy.context import info
from proxy.handlers.common import forward, repository, scopes, upstream_has
from proxy.names import check_digest, check_name
from proxy.state import services
from storage import fresh_uploads, uploads
from upstream.client import v2_path

SESSION_RE = re.compile(r"[A-Za-z0-9_.=-]{1,128}")
# The spec's "<start>-<end>"; also the HTTP form "bytes <start>-<end>/<total>" some clients send.
CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?([0-9]{1,18})-([0-9]{1,18})(?:/(?:[0-9]{1,18}|\*))?")
# Query keys an upload URL may carry; anything else is dropped before it reaches the upstream.
UPLOAD_QUERY = frozenset({"_state", "digest"})

log = logging.getLogger("gatekeeper.uploads")


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
    if mount is not None:
        record.action = "upload.mount"
    if mount is not None and source is not None:
        mount = await _mountable(request, mount, source, scope)
    if mount is not None:
        params["mount"] = mount
        if source is not None:
            params["from"] = check_name(source)
            scope = (*scope, f"repository:{source}:pull")
    digest = _digest_query(request)
    if digest is not None:
        params["digest"] = digest
        if mount is None:
            record.action = "blob.push"
    if mount is None and digest is None:
        record.action = "upload.start"

    async def recorded(resp: aiohttp.ClientResponse) -> None:
        # Before the client sees the answer: its next request must find the session its own,
        # and a blob it uploaded (or mounted) at once, fresh for reading back.
        upstream_session = resp.headers.get("Docker-Upload-UUID")
        if resp.status == 202 and upstream_session:
            try:
                await sessions.record(request, name, upstream_session)
            except OCIError as refused:
                # Over the cap (another process took the last slot) or not recordable: the
                # session would belong to nobody, so it must not stay open upstream.
                record.upstream_status = resp.status
                cancelled = await _cancel_upstream(request, name, upstream_session, resp)
                outcome = "cancelled" if cancelled else "could not be cancelled"
                record.reason = f"{refused.message}; upstream session {upstream_session} {outcome}"
                raise
        elif resp.status == 201 and (mount or digest):
            await sessions.bookkeep(request, fresh_uploads.remember, name, mount or digest)

    async with sessions.opening(request):
        return await forward(
            request,
            v2_path(name, "blobs", "uploads") + "/",
            scope=scope,
            params=params,
            stream_body=True,
            before_relay=recorded,
        )


async def _cancel_upstream(
    request: web.Request, name: str, upstream_session: str, opened: aiohttp.ClientResponse
) -> bool:
    """Cancel a session the upstream just opened for a POST that is refused after all. Best
    effort: one left behind belongs to nobody here (no client can use it) and the registry's
    own upload purging removes it."""
    state = yarl.URL(opened.headers.get("Location", "")).query.get("_state")
    try:
        async with await services(request).upstream.request(
            "DELETE",
            v2_path(name, "blobs", "uploads", upstream_session),
            scopes=scopes(name, "pull", "push"),
            params={"_state": state} if state else None,
        ) as resp:
            cancelled = resp.status in (204, 404)
    except OCIError:
        cancelled = False
    if not cancelled:
        log.warning("could not cancel upstream upload session %s of %s", upstream_session, name)
    return cancelled


async def _mountable(
    request: web.Request, mount: str, source: str, scope: tuple[str, ...]
) -> str | None:
    """The blob to mount from ``source``, or None when the mount becomes a plain upload, as
    the registry makes it: the caller may not read the source (which a plain upload tells
    nothing about), or the source does not hold the blob. Mounting is pulling from the
    source repository, so the pull gate applies."""
    record = info(request)
    if not may(request, check_name(source), "pull"):
        if caller(request).token is not None and pullable_by_caller(request, source):
            # The identity may read the source, its token does not say so: a client that only
            # follows challenges learns here to ask for both scopes (then it can mount).
            raise insufficient_scope(
                request,
                f"mounting from {source} needs a token that may also pull {source}",
                " ".join((*scope, *mount_source_scopes(request))),
                {"repository": source, "needed": ["pull"]},
            )
        record.action = "upload.start"
        record.reason = f"mount from {source} not permitted; started a plain upload"
        return None
    record.reference = f"from:{source}"
    try:
        await gate.check_blob(request, source, mount, present=upstream_has(request, source, mount))
    except OCIError as exc:
        if exc.code != Code.BLOB_UNKNOWN:
            raise
        record.action = "upload.start"
        record.decision, record.reason = None, f"{exc.message}; started a plain upload"
        return None
    return mount


def mount_source_scopes(request: web.Request) -> tuple[str, ...]:
    """The source repository's pull scope, for a POST that asks to mount from one (its
    challenge names it beside the target's ``pull,push``)."""
    source = request.query.get("from")
    if "mount" not in request.query or source is None:
        return ()
    if not is_repository_name(source):
        return ()  # the handler refuses the name (NAME_INVALID); the challenge leaves it out
    return (f"repository:{source}:pull",)


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
    last_use = await sessions.require_owner(request, name, session)
    if body:
        await _check_chunk_start(request, name, session)
    closing = request.query.get("digest") if action == "blob.push" else None

    finished: list[bool] = []

    async def completed(resp: aiohttp.ClientResponse) -> None:
        # Before the client hears the upload is complete: it may read the blob back at once.
        # The session is over too: one write for both (one statement on PostgreSQL, unless
        # stale fresh uploads are forgotten in the same transaction now and then).
        if closing is not None and resp.status == 201:
            clock = sessions.forgetting(request)
            idle = sessions.idle_of(request)
            if clock.due():
                more = await sessions.bookkeep(
                    request, _pushed_forgetting, name, closing, session, idle
                )
                if more is not None:
                    clock.done(more=more)
            else:
                await sessions.bookkeep(
                    request, uploads.complete, name, closing, session, idle, one_statement=True
                )
            finished.append(True)

    # A long chunk is activity from its start to its end, not only once it is done.
    alive = (
        sessions.kept_alive(request, name, session, last_use) if body else contextlib.nullcontext()
    )
    async with alive:
        response = await forward(
            request,
            v2_path(name, "blobs", "uploads", session),
            scope=scopes(name, "pull", "push"),
            params=_params(request),
            stream_body=body,
            before_relay=completed,
        )
    over = response.status == 404 or (action, response.status) in _SESSION_OVER
    if over:
        sessions.ended(request, name, session)
    if over and not finished:
        idle = sessions.idle_of(request)
        await sessions.bookkeep(request, uploads.finish, name, session, idle, one_statement=True)
    elif not over and response.status < 300 and not last_use.recent(_idle(request)):
        await sessions.touched(request, name, session)
    return response


def _idle(request: web.Request) -> float:
    return services(request).settings.uploads.session_idle_seconds


async def _pushed_forgetting(
    db: AsyncSession,
    name: str,
    digest: str,
    upstream_session: str,
    idle: tuple[str, timedelta],
) -> bool:
    """A closing PUT succeeded (``storage.uploads.complete``) when this process forgets a
    batch of stale fresh uploads too, in the same transaction: whether the batch was full."""
    more = await fresh_uploads.remember(db, name, digest, forget_stale=True)
    await uploads.finish(db, name, upstream_session, idle)
    return more


# The answers after which the upstream holds no session any more.
_SESSION_OVER = frozenset({("blob.push", 201), ("upload.cancel", 204)})


async def _check_chunk_start(request: web.Request, name: str, session: str) -> None:
    """A chunk's ``Content-Range`` must start where the upload ends (the spec's 416), on a
    PATCH and on the closing PUT alike.

    The registry does not check this itself: it appends an overlapping or out-of-order chunk
    and reports the sum as the upload's range (or, on the closing PUT, fails the digest with a
    400), so the session no longer holds what the client believes it sent. One status request
    upstream tells where the upload ends (``proxy/upload_offset.py``).
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
    resp = await services(request).upstream.request(
        "GET",
        v2_path(name, "blobs", "uploads", session),
        scopes=scopes(name, "pull", "push"),
        params=_params(request),
    )
    try:
        if resp.status != 204:
            return  # the request itself will relay the registry's answer (unknown session, ...)
        held = resp.headers.get("Range", "")
        allowed = upload_offset.next_bytes(resp.headers.get("Location"), held)
    finally:
        resp.release()
    if allowed is not None and start not in allowed:
        raise OCIError(
            Code.RANGE_INVALID,
            f"chunk starts at byte {start}, but the next byte of the upload is {allowed[0]}",
            {"content_range": raw[:60], "upload_range": held[:60], "next_byte": allowed[0]},
        )


async def patch(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "upload.chunk", body=True)


async def put(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "blob.push", body=True)


async def status(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "upload.status", body=False)


async def cancel(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "upload.cancel", body=False)
