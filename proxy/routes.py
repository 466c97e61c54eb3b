"""The route table: one line per endpoint of the OCI Distribution spec (v1.1), nothing else.

``{name}`` matches loosely on purpose: a malformed name must reach a handler and get
``NAME_INVALID``, not a bare 404. Handlers validate every path part before using it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy import health
from proxy.auth.http import CATALOG, LOGIN, OPEN, token_endpoint
from proxy.handlers import base, blobs, catalog, keys, manifests, referrers, tags, uploads

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Need = str | tuple[str, ...]
NAME = "/v2/{name:.+?}"
PULL: Need = ("pull",)
PUSH: Need = ("push",)
DELETE: Need = ("delete",)

# method, path, handler, what the caller needs (proxy.auth.http: repository actions on the
# path's repository, or LOGIN / CATALOG / OPEN), and the access-log action recorded if the
# request is refused before its handler runs (handlers refine it, e.g. a mount).
ROUTES: list[tuple[str, str, Handler, Need, str]] = [
    ("GET", "/v2/", base.get, LOGIN, "api.version"),
    ("GET", "/v2/_catalog", catalog.get, CATALOG, "catalog.list"),
    ("GET", NAME + "/tags/list", tags.get, PULL, "tags.list"),
    ("GET", NAME + "/manifests/{reference}", manifests.get, PULL, "manifest.pull"),
    ("HEAD", NAME + "/manifests/{reference}", manifests.get, PULL, "manifest.head"),
    ("PUT", NAME + "/manifests/{reference}", manifests.put, PUSH, "manifest.push"),
    ("DELETE", NAME + "/manifests/{reference}", manifests.delete, DELETE, "manifest.delete"),
    ("POST", NAME + "/blobs/uploads/", uploads.start, PUSH, "upload.start"),
    ("GET", NAME + "/blobs/uploads/{session}", uploads.status, PUSH, "upload.status"),
    ("PATCH", NAME + "/blobs/uploads/{session}", uploads.patch, PUSH, "upload.chunk"),
    ("PUT", NAME + "/blobs/uploads/{session}", uploads.put, PUSH, "blob.push"),
    ("DELETE", NAME + "/blobs/uploads/{session}", uploads.cancel, PUSH, "upload.cancel"),
    ("GET", NAME + "/blobs/{digest}", blobs.get, PULL, "blob.pull"),
    # Pushers check which blobs exist before uploading: HEAD stays open to them.
    ("HEAD", NAME + "/blobs/{digest}", blobs.head, ("pull", "push"), "blob.head"),
    ("DELETE", NAME + "/blobs/{digest}", blobs.delete, DELETE, "blob.delete"),
    ("GET", NAME + "/referrers/{digest}", referrers.get, PULL, "referrers.list"),
    ("GET", "/auth/token", token_endpoint, OPEN, "auth.token"),
    ("POST", "/auth/token", token_endpoint, OPEN, "auth.token"),
    ("GET", "/healthz", health.healthz, OPEN, "health"),
    ("GET", "/readyz", health.readyz, OPEN, "health"),
    ("GET", "/metrics", health.metrics, OPEN, "metrics"),
    # The public keys of the gatekeeper's own signatures (summaries, audit checkpoints).
    ("GET", "/keys/gatekeeper.json", keys.get_json, OPEN, "keys.get"),
    ("GET", "/keys/gatekeeper.pem", keys.get_pem, OPEN, "keys.get"),
]
# Scopes a token challenge names beyond the path's repository: a cross-repository mount also
# reads the source repository, so the client must be told to ask for both (as Distribution does).
EXTRA_SCOPES: dict[Handler, Callable[[web.Request], tuple[str, ...]]] = {
    uploads.start: uploads.mount_source_scopes,
}
ACCESS: dict[Handler, Need] = {handler: need for _, _, handler, need, _ in ROUTES}
ACTIONS: dict[tuple[str, Handler], str] = {
    (method, handler): action for method, _, handler, _, action in ROUTES
}

# Operational endpoints are probed every few seconds; they are not registry access.
UNAUDITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def add_routes(app: web.Application) -> None:
    for method, path, handler, _, _ in ROUTES:
        app.router.add_route(method, path, handler)
