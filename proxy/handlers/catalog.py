"""``GET /v2/_catalog``: repository listing, paginated by the upstream."""

from __future__ import annotations

from aiohttp import web

from proxy.context import info
from proxy.handlers.common import forward
from proxy.handlers.pagination import page_params


async def get(request: web.Request) -> web.StreamResponse:
    info(request).action = "catalog.list"
    n, last = page_params(request)
    params = {}
    if n is not None:
        params["n"] = str(n)
    if last is not None:
        params["last"] = last
    return await forward(request, "/v2/_catalog", scope=("registry:catalog:*",), params=params)
