"""A registry that redirects blob reads to object storage, and the store, as in-process fakes.

The registry asks for Basic credentials (so the gatekeeper has some to leak) and answers every
blob GET and HEAD with a ``307`` to a presigned-looking URL of the store, whose query has an
encoded ``/`` that must reach the store unchanged. Both record the headers they got.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from aiohttp import web

USERNAME, PASSWORD = "gatekeeper", "upstream-secret"
BASIC = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
SIGNATURE = "X-Amz-Signature=ab%2Fcd"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class FakeStore:
    """Serves ``blobs`` by digest under ``/bucket/<digest>``, with Range; ``status`` forces an
    answer (an expired signature: 403); ``loop`` redirects to itself for ever."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    status: int | None = None
    loop: bool = False
    failing: set[str] = field(default_factory=set)
    """Digests answered ``503`` (a store in trouble for some objects)."""
    dying: set[str] = field(default_factory=set)
    """Digests whose transfer breaks off after a few bytes."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bucket/{digest}", self.blob)
        return app

    async def blob(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        if self.loop:
            return web.Response(status=307, headers={"Location": request.path_qs})
        if self.status is not None:
            return web.Response(status=self.status, body=b"<Error>AccessDenied</Error>")
        digest = request.match_info["digest"]
        data = self.blobs.get(digest)
        if data is None:
            raise web.HTTPNotFound()
        if digest in self.failing:
            return web.Response(status=503, body=b"<Error>SlowDown</Error>")
        if digest in self.dying:
            resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
            await resp.prepare(request)
            await resp.write(data[:10])
            assert request.transport is not None
            request.transport.close()
            return resp
        wanted = _RANGE.fullmatch(request.headers.get("Range", ""))
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if wanted is None:
            return web.Response(body=data, headers=headers)
        start = int(wanted.group(1))
        end = min(int(wanted.group(2) or len(data) - 1), len(data) - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return web.Response(status=206, body=data[start : end + 1], headers=headers)


@dataclass
class RedirectingRegistry:
    """Asks for Basic credentials; redirects blob reads to ``store_url`` (with user info when
    ``userinfo`` is set, which must not become credentials)."""

    store_url: str
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    userinfo: str = ""
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    """Manifest bodies with their media type, by digest (served from the registry itself, as
    Distribution does)."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self.version)
        app.router.add_route("*", "/v2/{name:.+?}/blobs/{digest}", self.blob)
        app.router.add_route("*", "/v2/{name:.+?}/manifests/{reference}", self.manifest)
        return app

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        found = self.manifests.get(request.match_info["reference"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[1], headers={"Content-Type": found[0]})

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") == BASIC:
            return None
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="registry"'})

    async def version(self, request: web.Request) -> web.StreamResponse:
        return self._refused(request) or web.json_response({})

    async def blob(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        refused = self._refused(request)
        if refused is not None:
            return refused
        base = self.store_url.rstrip("/")
        if self.userinfo:
            base = base.replace("://", f"://{self.userinfo}@", 1)
        target = f"{base}/bucket/{request.match_info['digest']}?{SIGNATURE}"
        # By hand: aiohttp's HTTPTemporaryRedirect would normalise the URL.
        return web.Response(status=307, headers={"Location": target})
