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

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self.version)
        app.router.add_route("*", "/v2/{name:.+?}/blobs/{digest}", self.blob)
        return app

    async def version(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path_qs, dict(request.headers)))
        return web.json_response({})

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
