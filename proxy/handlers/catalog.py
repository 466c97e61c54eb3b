"""``GET /v2/_catalog``: repository listing, paginated by the upstream and filtered to the
repositories the caller may pull (a listing must not reveal what one cannot read)."""

from __future__ import annotations

import json

from aiohttp import web

from proxy.auth.http import pullable_by_caller
from proxy.context import info
from proxy.errors import Code, OCIError
from proxy.forward import read_at_most, response_headers
from proxy.handlers.common import public
from proxy.handlers.pagination import page_params
from proxy.state import services

MAX_LIST_BYTES = 64 * 1024 * 1024


async def get(request: web.Request) -> web.StreamResponse:
    record = info(request)
    record.action = "catalog.list"
    n, last = page_params(request)
    params = {}
    if n is not None:
        params["n"] = str(n)
    if last is not None:
        params["last"] = last
    svc = services(request)
    async with await svc.upstream.request(
        "GET", "/v2/_catalog", scopes=("registry:catalog:*",), params=params
    ) as resp:
        record.upstream_status = resp.status
        headers = response_headers(resp.headers, svc.upstream.base, public(request))
        body = await read_at_most(resp.content, MAX_LIST_BYTES + 1)
    if resp.status != 200:
        return web.Response(status=resp.status, body=body, headers=headers)
    try:
        names = json.loads(body)["repositories"] or []
    except (ValueError, KeyError, TypeError) as exc:
        raise OCIError(Code.UPSTREAM_BAD_GATEWAY, "upstream catalog unreadable") from exc
    visible = [name for name in names if pullable_by_caller(request, str(name))]
    headers.popall("Content-Length", None)
    headers.popall("Content-Type", None)
    return web.json_response({"repositories": visible}, headers=headers)
