"""The console's route table and its sub-application, mounted at ``/ui`` on the gatekeeper's
own listener (``proxy.app``).

Like the admin API's table, each line names the page, what it needs of the signed-in person
(``proxy.admin.access.Need``; None: open, for the sign-in form and the style sheet) and the
name that becomes the ``action`` of its access-log row (``ui.release``). Middlewares, outermost
first: error pages, then the guard (sessions, rights, CSRF); every answer gets the security
headers as it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from proxy.admin.access import Need
from proxy.errors import Handler
from proxy.ui import (
    accesslog,
    actions,
    headers,
    image,
    overview,
    policies,
    queue,
    render,
    signin,
    vex,
)
from proxy.ui.guard import build_guard

PREFIX = "/ui"
STATIC = Path(__file__).resolve().parent / "static"
IMAGE = "{reference:.+}"
MAX_FORM = 64 * 1024


@dataclass(frozen=True)
class Page:
    """One console route: verb, path under PREFIX, handler, name (the access-log action), need."""

    method: str
    path: str
    handler: Handler
    name: str
    need: Need | None


PAGES: tuple[Page, ...] = (
    Page("GET", "/", overview.page_view, "ui.overview", Need.READ),
    Page("GET", "/login", signin.form, "ui.login-form", None),
    Page("POST", "/login", signin.sign_in, "ui.login", None),
    Page("POST", "/logout", signin.sign_out, "ui.logout", Need.READ),
    Page("GET", "/queue", queue.page_view, "ui.queue", Need.READ),
    Page("GET", "/images/" + IMAGE, image.page_view, "ui.image", Need.READ),
    Page("GET", "/sbom/" + IMAGE, image.sbom, "ui.sbom", Need.READ),
    Page("POST", "/release/" + IMAGE, actions.release, "ui.release", Need.ACT),
    Page("POST", "/requarantine/" + IMAGE, actions.requarantine, "ui.requarantine", Need.ACT),
    Page("POST", "/rescan/" + IMAGE, actions.rescan, "ui.rescan", Need.ACT),
    Page("GET", "/waive/" + IMAGE, actions.waive_form, "ui.waive-form", Need.ACT),
    Page("POST", "/waive/" + IMAGE, actions.waive, "ui.waive", Need.ACT),
    Page("GET", "/log", accesslog.page_view, "ui.log", Need.READ),
    Page("GET", "/log.csv", accesslog.export_csv, "ui.log-csv", Need.READ),
    Page("GET", "/log.jsonl", accesslog.export_jsonl, "ui.log-jsonl", Need.READ),
    Page("GET", "/policies", policies.page_view, "ui.policies", Need.READ),
    Page("GET", "/vex", vex.vex_form, "ui.vex-form", Need.ACT),
    Page("POST", "/vex", vex.add_vex, "ui.vex-add", Need.ACT),
)


def console_app() -> web.Application:
    """The console sub-application (its services come from the parent's ``config_dict``)."""
    needs: dict[str, Need | None] = {page.name: page.need for page in PAGES}
    needs["ui.static"] = None
    app = web.Application(
        middlewares=[headers.error_pages, build_guard(needs)], client_max_size=MAX_FORM
    )
    render.setup(app)
    for page in PAGES:
        app.router.add_route(page.method, page.path, page.handler, name=page.name)
    app.router.add_static("/static", STATIC, name="ui.static")
    app.on_response_prepare.append(headers.security_headers)
    return app


async def _to_console(request: web.Request) -> web.StreamResponse:
    """``/ui`` without its slash: the console's overview."""
    return web.Response(status=308, headers={"Location": PREFIX + "/"})


def add_console(app: web.Application) -> None:
    app.router.add_get(PREFIX, _to_console)
    app.add_subapp(PREFIX, console_app())
