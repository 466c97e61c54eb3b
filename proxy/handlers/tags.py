"""``GET /v2/<name>/tags/list`` with ``n``/``last`` pagination.

distribution 2.8 ignores ``n``/``last`` on tag listings, so the gatekeeper gathers the whole
list from the upstream (following its ``Link`` pages if it has them) and paginates itself, with
the spec's lexical order and a ``Link`` header pointing at the gatekeeper.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from yarl import URL

from oci.errors import Code, OCIError
from proxy.context import info
from proxy.handlers.common import public, repository, scopes
from proxy.handlers.pagination import page_params
from proxy.state import services
from upstream.bodies import read_at_most
from upstream.client import v2_path

MAX_LIST_BYTES = 64 * 1024 * 1024
MAX_UPSTREAM_PAGES = 1000


async def _all_tags(request: web.Request, name: str) -> list[str]:
    upstream = services(request).upstream
    path: str | None = v2_path(name, "tags", "list")
    params: Any = None
    tags: list[str] = []
    for _ in range(MAX_UPSTREAM_PAGES):
        if path is None:
            break
        async with await upstream.request(
            "GET", path, scopes=scopes(name, "pull"), params=params
        ) as resp:
            info(request).upstream_status = resp.status
            if resp.status == 404:
                body = await read_at_most(resp.content, 64 * 1024)
                raise OCIError(Code.NAME_UNKNOWN, f"repository {name} is not known", _detail(body))
            if resp.status != 200:
                raise OCIError(
                    Code.UPSTREAM_BAD_GATEWAY, f"upstream answered {resp.status} to tags/list"
                )
            body = await read_at_most(resp.content, MAX_LIST_BYTES + 1)
            if len(body) > MAX_LIST_BYTES:
                raise OCIError(Code.UPSTREAM_BAD_GATEWAY, "upstream tag list too large")
            try:
                tags.extend(json.loads(body).get("tags") or [])
            except (ValueError, AttributeError) as exc:
                raise OCIError(Code.UPSTREAM_BAD_GATEWAY, "upstream tag list unreadable") from exc
            path, params = _next_page(resp.headers.get("Link"))
    return sorted(set(tags))


def _detail(body: bytes) -> Any:
    try:
        return json.loads(body)["errors"][0].get("detail")
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _next_page(link: str | None) -> tuple[str | None, Any]:
    if not link or 'rel="next"' not in link:
        return None, None
    url = URL(link[link.find("<") + 1 : link.find(">")], encoded=True)
    return url.raw_path, list(url.query.items())


async def get(request: web.Request) -> web.StreamResponse:
    info(request).action = "tags.list"
    name = repository(request)
    n, last = page_params(request)
    tags = await _all_tags(request, name)
    if last is not None:
        tags = [tag for tag in tags if tag > last]
    headers = {"Docker-Distribution-API-Version": "registry/2.0"}
    if n is not None and len(tags) > n:
        tags = tags[:n]
        if tags:
            query = urlencode({"n": n, "last": tags[-1]})
            next_url = public(request).join(URL(f"/v2/{name}/tags/list?{query}", encoded=True))
            headers["Link"] = f'<{next_url}>; rel="next"'
    return web.json_response({"name": name, "tags": tags}, headers=headers)
