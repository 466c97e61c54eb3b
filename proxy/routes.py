"""The route table: one line per endpoint of the OCI Distribution spec (v1.1), nothing else.

``{name}`` matches loosely on purpose: a malformed name must reach a handler and get
``NAME_INVALID``, not a bare 404. Handlers validate every path part before using it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy import health
from proxy.auth.http import CATALOG, LOGIN, OPEN, token_endpoint
from proxy.handlers import base, blobs, catalog, manifests, referrers, tags, uploads

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Need = str | tuple[str, ...]
NAME = "/v2/{name:.+?}"
PULL: Need = ("pull",)
PUSH: Need = ("push",)
DELETE: Need = ("delete",)

# method, path, handler, and what the caller needs (proxy.auth.http): repository actions on
# the path's repository, or LOGIN / CATALOG / OPEN.
ROUTES: list[tuple[str, str, Handler, Need]] = [
    ("GET", "/v2/", base.get, LOGIN),
    ("GET", "/v2/_catalog", catalog.get, CATALOG),
    ("GET", NAME + "/tags/list", tags.get, PULL),
    ("GET", NAME + "/manifests/{reference}", manifests.get, PULL),
    ("HEAD", NAME + "/manifests/{reference}", manifests.get, PULL),
    ("PUT", NAME + "/manifests/{reference}", manifests.put, PUSH),
    ("DELETE", NAME + "/manifests/{reference}", manifests.delete, DELETE),
    ("POST", NAME + "/blobs/uploads/", uploads.start, PUSH),
    ("GET", NAME + "/blobs/uploads/{session}", uploads.status, PUSH),
    ("PATCH", NAME + "/blobs/uploads/{session}", uploads.patch, PUSH),
    ("PUT", NAME + "/blobs/uploads/{session}", uploads.put, PUSH),
    ("DELETE", NAME + "/blobs/uploads/{session}", uploads.cancel, PUSH),
    ("GET", NAME + "/blobs/{digest}", blobs.get, PULL),
    # Pushers check which blobs exist before uploading: HEAD stays open to them.
    ("HEAD", NAME + "/blobs/{digest}", blobs.head, ("pull", "push")),
    ("DELETE", NAME + "/blobs/{digest}", blobs.delete, DELETE),
    ("GET", NAME + "/referrers/{digest}", referrers.get, PULL),
    ("GET", "/auth/token", token_endpoint, OPEN),
    ("POST", "/auth/token", token_endpoint, OPEN),
    ("GET", "/healthz", health.healthz, OPEN),
    ("GET", "/readyz", health.readyz, OPEN),
    ("GET", "/metrics", health.metrics, OPEN),
]
ACCESS: dict[Handler, Need] = {handler: need for _, _, handler, need in ROUTES}

# Operational endpoints are probed every few seconds; they are not registry access.
UNAUDITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def add_routes(app: web.Application) -> None:
    for method, path, handler, _ in ROUTES:
        app.router.add_route(method, path, handler)
