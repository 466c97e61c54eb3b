"""``GET /v2/_catalog``: the repositories the caller may pull, paginated over that list.

The registry paginates the whole catalog; the caller may see only part of it. So the gatekeeper
reads the registry's pages (the largest it serves) and keeps the names the caller may pull until
it has a page of those, and writes its own ``Link`` from what it returns: ``last`` is the last
name in the body, and the link is there only when another visible name follows. Neither the
body nor a header ever carries a name the caller may not pull (the registry's own ``Link``
names the last repository of its page, whoever may see it).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlencode

from aiohttp import web
from yarl import URL

from oci.errors import Code, OCIError
from proxy.auth.http import pullable_by_caller
from proxy.context import info
from proxy.forward import response_headers
from proxy.handlers.common import public
from proxy.handlers.pagination import page_params
from proxy.state import services
from upstream.bodies import read_at_most

MAX_LIST_BYTES = 64 * 1024 * 1024
UPSTREAM_PAGE = 1000
"""Distribution's largest catalog page (``catalog.maxentries``); it refuses a larger ``n``."""
DEFAULT_PAGE = 1000
"""Names per answer when the client gives no ``n``, as the registry does."""
MAX_UPSTREAM_PAGES = 1000


@dataclass(frozen=True)
class Page:
    """One answer of the catalog: the names it lists and whether there is a next page."""

    names: list[str]
    more: bool
    """Another name the caller may see follows the last of ``names``."""


class UpstreamRefused(Exception):
    """The registry answered a catalog page with an error, to be relayed as it is."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


async def get(request: web.Request) -> web.StreamResponse:
    info(request).action = "catalog.list"
    n, last = page_params(request)
    size = DEFAULT_PAGE if n is None else n
    try:
        page = await visible_page(
            partial(_upstream_page, request),
            partial(pullable_by_caller, request),
            last,
            size,
        )
    except UpstreamRefused as refused:
        return refused.response
    headers = {"Docker-Distribution-API-Version": "registry/2.0"}
    if page.more and page.names:
        query = urlencode({"last": page.names[-1], "n": size})
        next_url = public(request).join(URL(f"/v2/_catalog?{query}", encoded=True))
        headers["Link"] = f'<{next_url}>; rel="next"'
    return web.json_response({"repositories": page.names}, headers=headers)


UpstreamPages = Callable[[str | None], Awaitable[tuple[list[str], bool]]]
"""One page of the registry's catalog after a name: its names, and whether more pages follow."""


async def visible_page(
    fetch: UpstreamPages, may_see: Callable[[str], bool], last: str | None, size: int
) -> Page:
    """Up to ``size`` names after ``last`` that ``may_see``, and whether more follow: the
    registry is read until one more visible name turns up or its catalog ends."""
    visible: list[str] = []
    if size <= 0:
        return Page(visible, False)
    cursor = last
    for _ in range(MAX_UPSTREAM_PAGES):
        names, upstream_more = await fetch(cursor)
        for name in names:
            if may_see(name):
                if len(visible) == size:
                    return Page(visible, True)
                visible.append(name)
        if not names or not upstream_more:
            return Page(visible, False)
        cursor = names[-1]
    return Page(visible, True)


async def _upstream_page(request: web.Request, last: str | None) -> tuple[list[str], bool]:
    params = {"n": str(UPSTREAM_PAGE)}
    if last is not None:
        params["last"] = last
    svc = services(request)
    async with await svc.upstream.request(
        "GET", "/v2/_catalog", scopes=("registry:catalog:*",), params=params
    ) as resp:
        info(request).upstream_status = resp.status
        body = await read_at_most(resp.content, MAX_LIST_BYTES + 1)
        if resp.status != 200:
            headers = response_headers(resp.headers, svc.upstream.base, public(request))
            headers.popall("Link", None)
            raise UpstreamRefused(web.Response(status=resp.status, body=body, headers=headers))
        more = 'rel="next"' in resp.headers.get("Link", "")
    try:
        names = json.loads(body)["repositories"] or []
    except (ValueError, KeyError, TypeError) as exc:
        raise OCIError(Code.UPSTREAM_BAD_GATEWAY, "upstream catalog unreadable") from exc
    if not isinstance(names, list):
        raise OCIError(Code.UPSTREAM_BAD_GATEWAY, "upstream catalog unreadable")
    return [str(name) for name in names], more
