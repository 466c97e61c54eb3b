"""The admin API's route table, one line per endpoint, mounted under ``/admin/api/v1``.

Each route's name is also the ``action`` on its access-log row (``admin.release``), so the log
says what was attempted even when authentication refused it, and each route declares what it
needs of its caller (``proxy.admin.access.Need``: read or act within the caller's repositories,
or a settings-wide action for a global admin). The API is a sub-application with its own
middlewares: its errors are the admin JSON envelope, and it authenticates before routing, so an
unknown path tells a stranger nothing more than a known one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web

from proxy.admin import audit, images, openapi, policy, prefetch, sbom, vex, waivers
from proxy.admin.access import Need
from proxy.admin.auth import build_auth_middleware
from proxy.admin.errors import error_middleware
from proxy.errors import Handler

PREFIX = "/admin/api/v1"
IMAGE = "/images/{reference:.+}"
SBOM = "/repositories/{name:.+}/manifests/{digest}/sbom"
WAIVER = r"/waivers/{id:\d+}"
VEX = r"/vex/{id:\d+}"


@dataclass(frozen=True)
class Route:
    """One endpoint: verb, path under PREFIX (aiohttp syntax), handler, name, need."""

    method: str
    path: str
    handler: Handler
    name: str
    """The route's name and the ``action`` of its access-log rows."""
    need: Need
    """What the caller needs; the handler checks the repository it touches against it."""

    @property
    def template(self) -> str:
        """The full path as an OpenAPI template (``{reference}``, no regex)."""
        return PREFIX + re.sub(r"\{(\w+):[^}]+\}", r"{\1}", self.path)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/images", images.list_images, "admin.images", Need.READ),
    Route("GET", IMAGE, images.show, "admin.image", Need.READ),
    Route("POST", IMAGE + "/release", images.release, "admin.release", Need.ACT),
    Route("POST", IMAGE + "/requarantine", images.requarantine, "admin.requarantine", Need.ACT),
    Route("POST", IMAGE + "/rescan", images.rescan, "admin.rescan", Need.ACT),
    Route("POST", "/rescan", images.rescan_all, "admin.rescan-all", Need.ACT),
    Route("POST", "/prefetch", prefetch.prefetch, "admin.prefetch", Need.ACT),
    Route("POST", "/policy/test", policy.test_policies, "admin.policy-test", Need.SETTINGS),
    Route(
        "POST",
        "/policy/reevaluate",
        policy.reevaluate_policies,
        "admin.policy-reevaluate",
        Need.SETTINGS,
    ),
    Route("GET", "/policies", policy.effective_policies, "admin.policies", Need.READ),
    Route("GET", "/waivers", waivers.list_waivers, "admin.waivers", Need.READ),
    Route("POST", "/waivers", waivers.waive, "admin.waive", Need.ACT),
    Route("POST", WAIVER + "/withdraw", waivers.withdraw, "admin.waiver-withdraw", Need.ACT),
    Route("GET", "/vex", vex.list_vex, "admin.vex", Need.READ),
    Route("POST", "/vex", vex.add, "admin.vex-add", Need.ACT),
    Route("POST", VEX + "/withdraw", vex.withdraw, "admin.vex-withdraw", Need.ACT),
    Route("GET", SBOM, sbom.sbom, "admin.sbom", Need.READ),
    Route("GET", "/audit", audit.query, "admin.audit", Need.READ),
    Route("GET", "/openapi.json", openapi.document, "admin.openapi", Need.SETTINGS),
)


def admin_app() -> web.Application:
    """The admin sub-application (its services come from the parent's ``config_dict``)."""
    needs = {route.name: route.need for route in ROUTES}
    app = web.Application(
        middlewares=[error_middleware, build_auth_middleware(needs)], client_max_size=1024 * 1024
    )
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.name)
    return app


def add_admin(app: web.Application) -> None:
    app.add_subapp(PREFIX, admin_app())
