"""``/v2/<name>/blobs/<digest>``: GET (with Range), HEAD, DELETE.

"The gate decides, the kernel moves the bytes": when the registry's filesystem storage is
mounted (``upstream_storage_root``), a blob GET is answered with sendfile from the registry's
own data file, after the upstream has confirmed (by HEAD) that the blob belongs to this
repository and has the size the file has. A redirect to object storage goes to the client as it
is. Only when neither is possible are the bytes streamed through the gatekeeper.

A ``Range`` the blob cannot satisfy is answered here, 416 with ``Content-Range: bytes */<size>``,
on both paths alike (``proxy/ranges.py``): the registry's own 416 is malformed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict

from proxy import gate, ranges
from proxy.context import info
from proxy.errors import Code, OCIError
from proxy.forward import response_headers
from proxy.handlers.common import (
    digest_param,
    forward,
    public,
    repository,
    scopes,
    upstream_has,
)
from proxy.state import services
from proxy.upstream import v2_path

log = logging.getLogger("gatekeeper.blobs")

FILE_HEADERS = ("Docker-Content-Digest", "Content-Type")


def blob_data_path(root: Path, digest: str) -> Path:
    """The registry's layout: ``docker/registry/v2/blobs/<alg>/<2 hex>/<hex>/data``.

    ``digest`` has been validated (known algorithm, hex only), so no path trick can get in.
    """
    algorithm, _, encoded = digest.partition(":")
    return root / "docker/registry/v2/blobs" / algorithm / encoded[:2] / encoded / "data"


async def get(request: web.Request) -> web.StreamResponse:
    record = info(request)
    record.action = "blob.pull"
    name = repository(request)
    digest = digest_param(request)
    await gate.check_blob(request, name, digest, present=upstream_has(request, name, digest))
    svc = services(request)
    root = svc.settings.upstream_storage_root
    path = v2_path(name, "blobs", digest)
    wanted = request.headers.get("Range")
    if root is None and wanted is None:
        return await forward(request, path, scope=scopes(name, "pull"))
    async with await svc.upstream.request("HEAD", path, scopes=scopes(name, "pull")) as head:
        record.upstream_status = head.status
        headers = response_headers(head.headers, svc.upstream.base, public(request))
    if head.status in (301, 302, 303, 307, 308):
        record.decision = f"{record.decision}:redirect"
        record.bytes_out = 0
        return web.Response(status=head.status, headers=headers)
    if head.status != 200:
        # Not found or not ours: let the upstream phrase the error (a GET gives its body).
        return await forward(request, path, scope=scopes(name, "pull"))
    size = headers.get("Content-Length", "")
    if wanted is not None and size.isdigit() and not ranges.satisfiable(wanted, int(size)):
        raise OCIError(
            Code.RANGE_NOT_SATISFIABLE,
            f"the range {wanted[:60]!r} names no byte of this {size}-byte blob",
            {"range": wanted[:60], "size": int(size)},
            headers={"Content-Range": f"bytes */{size}"},
        )
    if root is not None and (wanted is None or ranges.single(wanted)):
        served = _sendfile(blob_data_path(root, digest), headers)
        if served is not None:
            record.decision = f"{record.decision}:sendfile"
            return served
    return await forward(request, path, scope=scopes(name, "pull"))


class KernelFileResponse(web.FileResponse):
    """A FileResponse that can be prepared early (by the audit middleware, to count the bytes
    it sent) and then again by aiohttp without sending the file twice."""

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


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
    return await forward(request, v2_path(name, "blobs", digest), scope=scopes(name, "pull"))


async def delete(request: web.Request) -> web.StreamResponse:
    info(request).action = "blob.delete"
    name = repository(request)
    digest = digest_param(request)
    return await forward(request, v2_path(name, "blobs", digest), scope=scopes(name, "delete"))
