"""``/v2/<name>/blobs/uploads/``: start (monolithic, resumable, cross-repository mount), PATCH
chunks, PUT to close, GET status, DELETE to cancel. Bodies stream straight to the upstream.

The upstream's opaque upload state (``_state``) travels in the query string of the ``Location``
it returns; it is passed back untouched, since only the upstream can read (and verify) it.
"""

from __future__ import annotations

import re

from aiohttp import web

from proxy import gate
from proxy.auth.http import may
from proxy.context import info
from proxy.errors import Code, OCIError
from proxy.handlers.common import forward, repository, scopes
from proxy.names import check_digest, check_name
from proxy.upstream import v2_path

SESSION_RE = re.compile(r"[A-Za-z0-9_.=-]{1,128}")
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
    return await forward(
        request,
        v2_path(name, "blobs", "uploads") + "/",
        scope=scope,
        params=params,
        stream_body=True,
    )


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
    return await forward(
        request,
        v2_path(name, "blobs", "uploads", session),
        scope=scopes(name, "pull", "push"),
        params=_params(request),
        stream_body=body,
    )


async def patch(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "upload.chunk", body=True)


async def put(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "blob.push", body=True)


async def status(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "upload.status", body=False)


async def cancel(request: web.Request) -> web.StreamResponse:
    return await _session_call(request, "upload.cancel", body=False)
