"""``/images``: list verdicts, show one, and the admin overrides on it (release, re-quarantine,
rescan).

Every override is written twice to the access log, on purpose: the request's own row
(``admin.release`` with the actor and reason) says who asked, and the verdict change published on
the event bus (``verdict.released``) says what changed; webhooks hang on the same event.
"""

from __future__ import annotations

from aiohttp import web

from oci.errors import OCIError
from proxy.admin import actions
from proxy.admin.access import require, require_everything, rights
from proxy.admin.bodies import ReasonBody, ReleaseBody, RescanAllBody, RescanBody
from proxy.admin.common import (
    actor,
    image_ref,
    ok,
    query_limit,
    query_repository,
    query_state,
    read_body,
    services,
    verdict_out,
    verdict_pages,
)
from proxy.admin.errors import AdminCode, AdminError
from proxy.admin.models import (
    Finding,
    HistoryEvent,
    ImageDetail,
    ImageKey,
    Images,
    Outcome,
    RescanAllQueued,
    RescanQueued,
)
from proxy.context import info
from proxy.names import check_name
from storage import verdicts
from storage.timeutil import now as utcnow


async def list_images(request: web.Request) -> web.StreamResponse:
    """GET /images?state=&repository=&limit= : the most recently changed first, of the
    repositories the caller may read."""
    state, repository, limit = query_state(request), query_repository(request), query_limit(request)
    if repository is not None:
        require(request, repository)
    readable = rights(request).reads.patterns
    async with services(request).db() as session:
        found = await verdicts.list_verdicts(session, state, repository, limit, patterns=readable)
    return ok(Images(images=[verdict_out(v) for v in found]))


async def show(request: web.Request) -> web.StreamResponse:
    """GET /images/{repository}@{digest} : the verdict with findings, outcomes and history."""
    repository, digest = image_ref(request)
    svc = services(request)
    async with svc.db() as session:
        verdict = await verdicts.get(session, repository, digest)
        if verdict is None:
            raise AdminError(AdminCode.NOT_FOUND, actions.no_verdict(repository, digest))
        findings = await verdicts.findings(session, repository, digest)
        history = await verdicts.history(session, repository, digest)
    applies = svc.policies.match(repository, verdict.origin)
    return ok(
        ImageDetail(
            **dict(verdict_out(verdict)),
            findings=[Finding.model_validate(f) for f in findings],
            outcomes=[Outcome.model_validate(o) for o in verdict.outcomes],
            history=[HistoryEvent.model_validate(e) for e in history],
            applicable_policy=applies,
        )
    )


async def release(request: web.Request) -> web.StreamResponse:
    """POST /images/{repository}@{digest}/release : let a quarantined (or pending) image out,
    until an optional expiry (``proxy.admin.actions.release_image``)."""
    repository, digest = image_ref(request)
    body = await read_body(request, ReleaseBody)
    who = actor(request, body.actor, body.reason)
    stored = await actions.release_image(
        services(request), repository, digest, who, body.reason, body.expiry(utcnow())
    )
    return ok(verdict_out(stored))


async def requarantine(request: web.Request) -> web.StreamResponse:
    """POST /images/{repository}@{digest}/requarantine : withdraw a release or a pass; the
    hold covers the image's content (``proxy.admin.actions.requarantine_image``)."""
    repository, digest = image_ref(request)
    body = await read_body(request, ReasonBody)
    who = actor(request, body.actor, body.reason)
    stored = await actions.requarantine_image(
        services(request), repository, digest, who, body.reason
    )
    return ok(verdict_out(stored))


async def rescan(request: web.Request) -> web.StreamResponse:
    """POST /images/{repository}@{digest}/rescan : verify again with today's verifiers."""
    repository, digest = image_ref(request)
    body = await read_body(request, RescanBody)
    who = actor(request, body.actor, body.reason or "rescan")
    current = await actions.rescan_image(services(request), repository, digest, who, body.reason)
    return ok(RescanQueued(queued=1, images=[ImageKey.model_validate(current)]), status=202)


async def rescan_all(request: web.Request) -> web.StreamResponse:
    """POST /rescan : queue a rescan of one repository's images (an admin of it), or of every
    known image (a global admin)."""
    body = await read_body(request, RescanAllBody)
    if body.repository is not None:
        try:
            info(request).repository = check_name(body.repository)
        except OCIError as exc:
            raise AdminError(AdminCode.INVALID_FIELD, f"repository: {exc.message}") from exc
        require(request, body.repository)
    else:
        require_everything(request, "a rescan without a repository")
    scope = body.repository or "every repository"
    who = actor(request, body.actor, body.reason or f"rescan {scope}")
    svc = services(request)
    count = 0
    async for batch in verdict_pages(svc, body.repository):
        for verdict in batch:
            await actions.queue_rescan(svc, verdict, who, body.reason)
            count += 1
    return ok(RescanAllQueued(queued=count, repository=body.repository), status=202)
