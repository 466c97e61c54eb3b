"""``/ui/vex``: add an OpenVEX document from the console, pasted into a form with a scope and a
reason.

The form's fields become the admin API's ``VexBody`` and go through its own handler's code
(``proxy.admin.vex.accept``): the same validation of the document, the same check that the
scope lies within what the person administers, the same storing and re-decision. A refusal
re-renders the form with the message and the pasted text (nothing is stored), so a long
document need not be pasted again; success sends the browser to the policies page, where the
waivers the document makes are listed with the policy in force.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from oci import boundedjson
from oci.errors import OCIError
from proxy.admin.bodies import VexBody
from proxy.admin.errors import AdminCode, AdminError
from proxy.admin.vex import accept
from proxy.context import info
from proxy.names import check_name
from proxy.ui import urls
from proxy.ui.forms import text, validated
from proxy.ui.render import page


def _form(
    request: web.Request, fields: dict[str, str], error: str = "", status: int = 200
) -> web.Response:
    return page(request, "vex.html", {**fields, "error": error, "vex_url": urls.VEX}, status=status)


def _document(raw: str | None) -> dict[str, Any]:
    """The pasted JSON, as the admin API reads a body: bounded depth, an object."""
    if raw is None:
        raise AdminError(AdminCode.INVALID_FIELD, "document: paste an OpenVEX document (JSON)")
    try:
        data = boundedjson.loads(raw)
    except ValueError as exc:
        raise AdminError(AdminCode.INVALID_FIELD, f"document: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise AdminError(AdminCode.INVALID_FIELD, "document: must be a JSON object")
    return data


def _after(scope: str) -> str:
    """The policies page, showing the scope's policy (and its waivers) when it names one
    repository rather than a glob."""
    try:
        repository = check_name(scope)
    except OCIError:
        repository = ""
    return urls.with_query(urls.POLICIES, {"repository": repository, "done": "vex"})


async def vex_form(request: web.Request) -> web.StreamResponse:
    """GET /ui/vex?scope= : the form, the scope optionally preset."""
    return _form(
        request, {"document": "", "scope": request.query.get("scope", "")[:255], "reason": ""}
    )


async def add_vex(request: web.Request) -> web.StreamResponse:
    """POST /ui/vex : store the document (within what the person administers) and decide again
    every verdict it touches; a refusal shows the form again with why."""
    form = await request.post()
    fields = {k: str(form.get(k, "")) for k in ("document", "scope", "reason")}
    try:
        body = validated(
            VexBody,
            {
                "document": _document(text(form, "document")),
                "scope": text(form, "scope"),
                "reason": text(form, "reason"),
            },
        )
        await accept(request, body)
    except AdminError as exc:
        record = info(request)
        record.reason = exc.message
        if exc.code.status in (401, 403):
            record.decision = "deny"
        return _form(request, fields, exc.message, exc.code.status)
    info(request).decision = "allow"
    return web.Response(status=303, headers={"Location": _after(body.scope)})
