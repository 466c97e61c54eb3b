"""An in-process fake upstream for behaviour the real registry cannot be made to show
(object-storage redirects, dying mid-body)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

REDIRECT_TARGET = "https://objects.example.invalid/bucket/data?X-Signature=abc%2Fdef"


@dataclass
class FakeUpstream:
    """Records the requests it gets; each behaviour is keyed by repository name."""

    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    opened: int = 0
    """Upload sessions opened (``session-1``, ``session-2``...)."""
    upload_delay: float = 0.0
    """Seconds an upload POST takes to answer (so that many are in flight at once)."""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self.version)
        app.router.add_post("/v2/{name:.+?}/blobs/uploads/", self.upload_start)
        app.router.add_get("/v2/{name:.+?}/blobs/uploads/{session}", self.upload_status)
        app.router.add_delete("/v2/{name:.+?}/blobs/uploads/{session}", self.upload_cancel)
        app.router.add_route("*", "/v2/{name:.+?}/blobs/{digest}", self.blob)
        return app

    async def version(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        return web.json_response({})

    async def upload_start(self, request: web.Request) -> web.StreamResponse:
        """A new upload session, named by how many were opened."""
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        self.opened += 1
        session = f"session-{self.opened}"
        await asyncio.sleep(self.upload_delay)
        location = f"/v2/{request.match_info['name']}/blobs/uploads/{session}?_state=opaque"
        headers = {"Location": location, "Docker-Upload-UUID": session, "Range": "0-0"}
        return web.Response(status=202, headers=headers)

    async def upload_status(self, request: web.Request) -> web.StreamResponse:
        """Any session is an empty one."""
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        session = request.match_info["session"]
        headers = {"Location": request.path_qs, "Docker-Upload-UUID": session, "Range": "0-0"}
        return web.Response(status=204, headers=headers)

    async def upload_cancel(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        return web.Response(status=204)

    async def blob(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        name = request.match_info["name"]
        if name == "redirected":
            # Set the header by hand: aiohttp's HTTPTemporaryRedirect would normalise the URL.
            return web.Response(status=307, headers={"Location": REDIRECT_TARGET})
        if name == "dies":
            resp = web.StreamResponse(headers={"Content-Length": str(1 << 20)})
            await resp.prepare(request)
            await resp.write(b"x" * 100_000)
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.close()
            return resp
        raise web.HTTPNotFound()
