"""``/v2/<name>/blobs/<digest>``: GET (with Range), HEAD, DELETE.

"The gate decides, the kernel moves the bytes": when the registry's filesystem storage is
mounted (``upstream_storage_root``), a blob GET is answered with sendfile from the registry's
own data file, once the repository's link to the blob (``proxy.registry_files``) says it belongs
to this repository, without a round trip to the registry; a blob without that link is asked
of the registry by HEAD as before (and served by sendfile if it confirms the file's size).
A redirect to object storage (a registry on S3) goes to the client as it is, so the bytes go
from the store to the client; with ``blob_redirects = "proxy"`` the gatekeeper follows it and
streams them instead (``upstream.redirects``: without the upstream's credentials, the client's
``Range`` passed on). Otherwise the bytes are streamed
through the gatekeeper. Whatever the path, the gate has decided before the upstream is asked.

A ``Range`` the blob cannot satisfy is answered here, 416 with ``Content-Range: bytes */<size>``,
on both the sendfile and the streamed path (``proxy/ranges.py``): the registry's own 416 is
malformed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aiohttp import ClientResponse, web
from multidict import CIMultiDict

from oci.errors import Code, OCIError
from proxy import gate, ranges, registry_files, remote_failures
from proxy.context import info
from proxy.forward import relay, request_headers, response_headers
from proxy.handlers.common import (
    digest_param,
    forward,
    public,
    repository,
    scopes,
    upstream_has,
)
from proxy.sendfile import KernelFileResponse
from proxy.state import services
from upstream.client import v2_path
from upstream.redirects import REDIRECTS, follow

log = logging.getLogger("gatekeeper.blobs")

FILE_HEADERS = ("Docker-Content-Digest", "Content-Type")


async def get(request: web.Request) -> web.StreamResponse:
    record = info(request)
    record.action = "blob.pull"
    name = repository(request)
    digest = digest_param(request)
    await gate.check_blob(request, name, digest, present=upstream_has(request, name, digest))
    root = services(request).settings.upstream_storage_root
    wanted = request.headers.get("Range")
    if root is not None:
        served = _from_files(request, name, digest, root, wanted)
        if served is not None:
            return served
    if root is not None or wanted is not None:
        served = await _from_storage(request, name, digest, root, wanted)
        if served is not None:
            return served
    return await _relay(request, name, digest)


def _from_files(
    request: web.Request, name: str, digest: str, root: Path, wanted: str | None
) -> web.StreamResponse | None:
    """The blob by sendfile when the registry's files say this repository holds it, with no
    round trip: the answer the registry's own HEAD would have given. None to ask it."""
    size = registry_files.blob_size(root, name, digest)
    if size is None or (wanted is not None and not ranges.single(wanted)):
        return None
    _check_range(wanted, size)
    headers = CIMultiDict({"Docker-Content-Digest": digest, "Content-Length": str(size)})
    served = _sendfile(registry_files.blob_data_path(root, digest), headers)
    if served is not None:
        info(request).decision = f"{info(request).decision}:sendfile"
    return served


def _check_range(wanted: str | None, size: int) -> None:
    """A ``Range`` naming no byte of the blob is answered 416 here (the registry's is
    malformed)."""
    if wanted is not None and not ranges.satisfiable(wanted, size):
        raise OCIError(
            Code.RANGE_NOT_SATISFIABLE,
            f"the range {wanted[:60]!r} names no byte of this {size}-byte blob",
            {"range": wanted[:60], "size": size},
            headers={"Content-Range": f"bytes */{size}"},
        )


async def _from_storage(
    request: web.Request, name: str, digest: str, root: Path | None, wanted: str | None
) -> web.StreamResponse | None:
    """What a HEAD of the blob lets the gatekeeper answer itself: a ``Range`` it cannot
    satisfy (a clean 416), or the whole file or one range with sendfile when the registry's
    storage is mounted. None to go the usual way (the file is missing or differs, or the
    registry redirects: then its storage is not this filesystem)."""
    svc = services(request)
    record = info(request)
    path = v2_path(name, "blobs", digest)
    async with await svc.upstream.request("HEAD", path, scopes=scopes(name, "pull")) as head:
        record.upstream_status = head.status
        headers = response_headers(head.headers, svc.upstream.base, public(request))
    if head.status != 200:
        # A redirect is for HEAD only (a presigned URL names its method); not found or not
        # ours: the GET of the usual way gives the registry's own answer.
        return None
    size = headers.get("Content-Length", "")
    if size.isdigit():
        _check_range(wanted, int(size))
    if root is None or (wanted is not None and not ranges.single(wanted)):
        return None
    served = _sendfile(registry_files.blob_data_path(root, digest), headers)
    if served is not None:
        record.decision = f"{record.decision}:sendfile"
    return served


async def _relay(request: web.Request, name: str, digest: str) -> web.StreamResponse:
    """GET or HEAD the blob upstream and relay the answer; a redirect to object storage is
    passed on or followed as ``blob_redirects`` says."""
    svc = services(request)
    record = info(request)
    headers = request_headers(request)
    headers.popall("Content-Length", None)
    resp = await svc.upstream.request(
        request.method, v2_path(name, "blobs", digest), scopes=scopes(name, "pull"), headers=headers
    )
    if resp.status >= 500 and svc.verification.serving_remote(name) is not None:
        # Not in the registry's cache, and its remote could not give it: say which and why.
        record.upstream_status = resp.status
        resp.release()
        await remote_failures.check_fetch(request, name, "blobs", digest, resp.status)
    extra: dict[str, str] = {}
    if resp.status in REDIRECTS:
        if svc.settings.blob_redirects == "client":
            record.decision = f"{record.decision}:redirect"
        else:
            record.decision = f"{record.decision}:followed"
            resp = await follow(svc.upstream.session, resp, method=request.method, headers=headers)
            _check_store(resp)
            # The registry confirmed the blob by redirecting; the store does not say its digest.
            extra = {"Docker-Content-Digest": digest}
    try:
        return await relay(request, resp, svc.upstream.base, public(request), extra=extra)
    finally:
        resp.release()


def _check_store(resp: ClientResponse) -> None:
    """A store's own errors (an expired signature, an outage) are not the client's to parse:
    they become a bad gateway. A range the client asked beyond the end stays 416."""
    if resp.status in (200, 206, 416):
        return
    status = resp.status
    resp.release()
    raise OCIError(
        Code.UPSTREAM_BAD_GATEWAY,
        f"the registry's object storage answered {status} for the redirected blob",
        {"upstream_status": status},
    )


def _sendfile(data: Path, upstream_headers: CIMultiDict[str]) -> web.FileResponse | None:
    expected = upstream_headers.get("Content-Length")
    try:
        size = os.stat(data).st_size
    except OSError as exc:
        log.warning("blob file not readable, streaming instead: %s", exc)
        return None
    if expected is None or not expected.isdigit() or int(expected) != size:
        log.warning("blob file size %s differs from upstream's %s; streaming", size, expected)
        return None
    headers = {k: upstream_headers[k] for k in FILE_HEADERS if k in upstream_headers}
    headers["Docker-Distribution-API-Version"] = "registry/2.0"
    headers.setdefault("Content-Type", "application/octet-stream")
    return KernelFileResponse(data, headers=headers)


async def head(request: web.Request) -> web.StreamResponse:
    """HEAD answers only what the gate allows: a pull-only identity learns nothing (not even
    the size) of a blob it may not pull; a pusher may check before uploading."""
    info(request).action = "blob.head"
    name = repository(request)
    digest = digest_param(request)
    await gate.check_blob_exists(request, name, digest, present=upstream_has(request, name, digest))
    return await _relay(request, name, digest)


async def delete(request: web.Request) -> web.StreamResponse:
    info(request).action = "blob.delete"
    name = repository(request)
    digest = digest_param(request)
    return await forward(request, v2_path(name, "blobs", digest), scope=scopes(name, "delete"))
