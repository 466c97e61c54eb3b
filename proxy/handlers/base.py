"""``GET /v2/``: the API version check every client starts with."""

from __future__ import annotations

from aiohttp import web

from oci.errors import Code, OCIError
from proxy.context import info
from proxy.state import services

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


async def get(request: web.Request) -> web.StreamResponse:
    """Answer for the gatekeeper (client auth is ours, not the upstream's), but only while the
    upstream answers too, so clients fail fast with a clear error when it is down."""
    record = info(request)
    record.action = "api.version"
    upstream = services(request).upstream
    async with await upstream.request("GET", "/v2/") as resp:
        record.upstream_status = resp.status
        if resp.status != 200:
            raise OCIError(
                Code.UPSTREAM_BAD_GATEWAY,
                f"the upstream registry answered {resp.status} to the version check",
            )
    return web.json_response({}, headers=API_HEADERS)
