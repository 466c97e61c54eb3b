"""Templates: Jinja2 through aiohttp-jinja2, with autoescape on for every template and every
printed value passed through ``config.text.visible`` (the ``finalize`` hook), so a control or
bidirectional character a client put in a path, a tag or a reason is shown escaped
(``\\u202e``), never acted on, on every page, without a template having to remember it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from config.text import visible
from proxy.admin.access import NEED, RIGHTS
from proxy.ui import urls
from proxy.ui.guard import SESSION
from storage.timeutil import utc


def _finalize(value: Any) -> Any:
    """Every ``{{ ... }}``: markup built by our own code (the chart) as it is, else visible
    text, which autoescape then escapes."""
    if isinstance(value, Markup):
        return value
    return visible(value)


def when(moment: datetime | None) -> str:
    """A moment in UTC, to the second, as every page shows it."""
    moment = utc(moment)  # a settings file's waiver may omit the offset: UTC, as decided
    if moment is None:
        return "—"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago, roughly (``3 h``), for lists where the exact time is in the title."""
    if moment is None:
        return "—"
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def short(digest: str | None) -> str:
    """``sha256:0123456789ab…``: enough to tell images apart in a table."""
    if not digest:
        return "—"
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}…" if len(hexdigest) > 12 else digest


def size(value: int | None) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(value)


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("proxy.ui", "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, ago=ago, short=short, size=size)
    env.globals.update(
        image_url=urls.image, sbom_url=urls.sbom, action_url=urls.action, waive_url=urls.waive
    )


def base_context(request: web.Request) -> dict[str, Any]:
    """What the layout needs: who is signed in, what they may do, the form token."""
    who = request.get(RIGHTS)
    found = request.get(SESSION)
    return {
        "user": who.principal if who is not None else None,
        "rights": who,
        "can_act": who is not None and not who.administers.empty,
        "csrf": found.csrf if found is not None else "",
        "need": request.get(NEED),
        "path": request.path,
    }


def page(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """A rendered page with the layout's context."""
    return aiohttp_jinja2.render_template(
        template, request, {**base_context(request), **context}, status=status
    )
