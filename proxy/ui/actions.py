"""The console's actions on an image: release (a reason, an optional end), re-quarantine,
re-verify now, and waive a finding (a scope, a reason, an optional end).

Each is a POST form handled in three steps: the admin API's body model validates the input
(the same refusals as the API), ``proxy.admin.actions`` does what the API does (the same
checks of state, the same events, webhooks and verdict-change rows of the access log), and the
browser is sent back to the image page (303, so a reload does not post again). The request's
own access-log row names the person and the reason (``ui.release``, ...), beside the
``verdict.*`` row the change itself writes.
"""

from __future__ import annotations

from aiohttp import web

from proxy.admin import actions
from proxy.admin.access import require_pattern
from proxy.admin.bodies import ReasonBody, ReleaseBody, RescanBody, WaiverBody
from proxy.admin.common import image_ref, services
from proxy.context import info
from proxy.ui import urls
from proxy.ui.forms import days, text, validated
from proxy.ui.render import page
from storage.timeutil import now as utcnow


def _acted(request: web.Request, reason: str | None) -> str:
    """The actor of the change (the signed-in person) and the row's reason."""
    record = info(request)
    if reason:
        record.reason = reason
    record.decision = "allow"
    return record.identity


def _back(repository: str, digest: str, done: str) -> web.Response:
    return web.Response(
        status=303,
        headers={"Location": urls.with_query(urls.image(repository, digest), {"done": done})},
    )


async def release(request: web.Request) -> web.StreamResponse:
    """POST /ui/release/{repository}@{digest}"""
    repository, digest = image_ref(request)
    form = await request.post()
    body = validated(
        ReleaseBody,
        {"reason": text(form, "reason"), "expires_in_seconds": days(form, "expires_in_days")},
    )
    who = _acted(request, body.reason)
    await actions.release_image(
        services(request), repository, digest, who, body.reason, body.expiry(utcnow())
    )
    return _back(repository, digest, "released")


async def requarantine(request: web.Request) -> web.StreamResponse:
    """POST /ui/requarantine/{repository}@{digest}"""
    repository, digest = image_ref(request)
    body = validated(ReasonBody, {"reason": text(await request.post(), "reason")})
    who = _acted(request, body.reason)
    await actions.requarantine_image(services(request), repository, digest, who, body.reason)
    return _back(repository, digest, "requarantined")


async def rescan(request: web.Request) -> web.StreamResponse:
    """POST /ui/rescan/{repository}@{digest}"""
    repository, digest = image_ref(request)
    body = validated(RescanBody, {"reason": text(await request.post(), "reason")})
    who = _acted(request, body.reason or "rescan")
    await actions.rescan_image(services(request), repository, digest, who, body.reason)
    return _back(repository, digest, "rescan")


async def waive_form(request: web.Request) -> web.StreamResponse:
    """GET /ui/waive/{repository}@{digest}?finding= : the waiver form, scope preset to the
    repository (an admin may widen it to a glob within their grant)."""
    repository, digest = image_ref(request)
    return page(
        request,
        "waive.html",
        {
            "repository": repository,
            "digest": digest,
            "finding": request.query.get("finding", "")[:255],
            "scope": repository,
        },
    )


async def waive(request: web.Request) -> web.StreamResponse:
    """POST /ui/waive/{repository}@{digest} : store the waiver (within what the person
    administers) and decide again, from stored findings, every verdict it touches."""
    repository, digest = image_ref(request)
    form = await request.post()
    body = validated(
        WaiverBody,
        {
            "finding": text(form, "finding"),
            "scope": text(form, "scope"),
            "reason": text(form, "reason"),
            "expires_in_seconds": days(form, "expires_in_days"),
        },
    )
    require_pattern(request, body.scope)
    who = _acted(request, body.reason)
    await actions.make_waiver(
        services(request),
        finding=body.finding,
        scope=body.scope,
        reason=body.reason,
        who=who,
        expires=body.expiry(utcnow()),
    )
    return _back(repository, digest, "waived")
