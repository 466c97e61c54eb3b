"""The route table: one line per endpoint of the OCI Distribution spec (v1.1), nothing else.

``{name}`` matches loosely on purpose: a malformed name must reach a handler and get
``NAME_INVALID``, not a bare 404. Handlers validate every path part before using it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy import health
from proxy.handlers import base, blobs, catalog, manifests, referrers, tags, uploads

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NAME = "/v2/{name:.+?}"

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/v2/", base.get),
    ("GET", "/v2/_catalog", catalog.get),
    ("GET", NAME + "/tags/list", tags.get),
    ("GET", NAME + "/manifests/{reference}", manifests.get),
    ("HEAD", NAME + "/manifests/{reference}", manifests.get),
    ("PUT", NAME + "/manifests/{reference}", manifests.put),
    ("DELETE", NAME + "/manifests/{reference}", manifests.delete),
    ("POST", NAME + "/blobs/uploads/", uploads.start),
    ("GET", NAME + "/blobs/uploads/{session}", uploads.status),
    ("PATCH", NAME + "/blobs/uploads/{session}", uploads.patch),
    ("PUT", NAME + "/blobs/uploads/{session}", uploads.put),
    ("DELETE", NAME + "/blobs/uploads/{session}", uploads.cancel),
    ("GET", NAME + "/blobs/{digest}", blobs.get),
    ("HEAD", NAME + "/blobs/{digest}", blobs.head),
    ("DELETE", NAME + "/blobs/{digest}", blobs.delete),
    ("GET", NAME + "/referrers/{digest}", referrers.get),
    ("GET", "/healthz", health.healthz),
    ("GET", "/readyz", health.readyz),
    ("GET", "/metrics", health.metrics),
]

# Operational endpoints are probed every few seconds; they are not registry access.
UNAUDITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def add_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
