"""``/images``: list verdicts, show one, and the admin overrides on it (release, re-quarantine,
rescan).

Every override is written twice to the access log, on purpose: the request's own row
(``admin.release`` with the actor and reason) says who asked, and the verdict change published on
the event bus (``verdict.released``) says what changed; webhooks hang on the same event.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.access import require, require_everything, rights
from proxy.admin.bodies import ReasonBody, ReleaseBody, RescanAllBody, RescanBody
from proxy.admin.common import (
    actor,
    image_ref,
    iso,
    ok,
    query_limit,
    query_repository,
    query_state,
    read_body,
    services,
    verdict_json,
    verdict_pages,
)
from proxy.admin.errors import AdminCode, AdminError
from proxy.context import info
from proxy.errors import OCIError
from proxy.events import VerdictChange
from proxy.names import check_name
from proxy.state import Services
from storage import content, jobs, verdicts
from storage.timeutil import now as utcnow
from storage.verdicts import VerdictView
from verifiers import lifecycle
from verifiers.lifecycle import State


def _no_verdict(repository: str, digest: str) -> str:
    return (
        f"the gatekeeper has no verdict for {repository}@{digest}: it has never seen it pushed "
        "or pulled through the gatekeeper (a pull verifies it)"
    )


async def list_images(request: web.Request) -> web.StreamResponse:
    """GET /images?state=&repository=&limit= : the most recently changed first, of the
    repositories the caller may read."""
    state, repository, limit = query_state(request), query_repository(request), query_limit(request)
    if repository is not None:
        require(request, repository)
    readable = rights(request).reads.patterns
    async with services(request).db() as session:
        found = await verdicts.list_verdicts(session, state, repository, limit, patterns=readable)
    return ok({"images": [verdict_json(v) for v in found]})


async def show(request: web.Request) -> web.StreamResponse:
    """GET /images/{repository}@{digest} : the verdict with findings, outcomes and history."""
    repository, digest = image_ref(request)
    svc = services(request)
    async with svc.db() as session:
        verdict = await verdicts.get(session, repository, digest)
        if verdict is None:
            raise AdminError(AdminCode.NOT_FOUND, _no_verdict(repository, digest))
        findings = await verdicts.findings(session, repository, digest)
        history = await verdicts.history(session, repository, digest)
    applies = svc.policies.match(repository, verdict.origin)
    return ok(
        {
            **verdict_json(verdict),
            "findings": [f.__dict__ for f in findings],
            "outcomes": list(verdict.outcomes),
            "history": [
                {
                    "time": iso(e.time),
                    "event": e.event,
                    "old_state": e.old_state,
                    "new_state": e.new_state,
                    "actor": e.actor,
                    "reason": e.reason,
                }
                for e in history
            ],
            "applicable_policy": applies.model_dump(mode="json"),
        }
    )


async def release(request: web.Request) -> web.StreamResponse:
    """POST /images/{repository}@{digest}/release : let a quarantined (or pending) image out,
    until an optional expiry, after which the sweeper quarantines it again. Its hold on content
    is lifted too, so the manifests that inherited it are verified again."""
    repository, digest = image_ref(request)
    body = await read_body(request, ReleaseBody)
    who = actor(request, body.actor, body.reason)
    svc = services(request)
    policy = await svc.verification.policy_of(repository, digest)
    if policy.deny_all:
        raise AdminError(
            AdminCode.CONFLICT,
            f"no policy matches {repository}@{digest} (its repository and origin), so it "
            "cannot be pulled and a release would change nothing; add a policy for it",
        )
    expires = body.expiry(utcnow())
    async with svc.db() as session, session.begin():
        current = await verdicts.get(session, repository, digest)
        if current is None:
            raise AdminError(AdminCode.CONFLICT, _no_verdict(repository, digest))
        if current.effective_state() == State.PASSED:
            raise AdminError(
                AdminCode.CONFLICT,
                f"{repository}@{digest} passed verification; there is nothing to release",
            )
        await _refuse_inherited_hold(session, repository, digest)
        old, new = await verdicts.release(session, repository, digest, who, body.reason, expires)
        freed = await content.lift_holds(session, repository, digest)
        inherited = await content.referencing(session, freed) if freed else []
        stored = await verdicts.get(session, repository, digest)
    until = f" (until {expires.isoformat()})" if expires else ""
    await svc.bus.publish(
        VerdictChange(
            "released", repository, digest, old, new, who, body.reason + until, policy=policy.name
        )
    )
    for other_repository, other in inherited:
        if (other_repository, other) != (repository, digest):
            why = f"the hold of {repository}@{digest} on content it holds was lifted by {who}"
            await svc.verification.submit(other_repository, other, why, identity=jobs.admin(who))
    assert stored is not None
    return ok(verdict_json(stored))


async def _refuse_inherited_hold(session: AsyncSession, repository: str, digest: str) -> None:
    """An image that holds content an admin holds with another image is released by
    releasing that image (hold > release): a re-wrap must not free held bytes."""
    blobs = [blob for _, blob in await content.image_blobs(session, repository, digest)]
    holds = [
        h
        for h in await content.holds_on(session, blobs)
        if (h.repository, h.digest) != (repository, digest)
    ]
    if holds:
        first = holds[0]
        raise AdminError(
            AdminCode.CONFLICT,
            f"{repository}@{digest} holds content ({first.blob}) that {first.actor} holds in "
            f"quarantine with {first.holder}: release {first.holder} to let it out",
        )


async def requarantine(request: web.Request) -> web.StreamResponse:
    """POST /images/{repository}@{digest}/requarantine : withdraw a release or a pass. The hold
    covers the image's content: its config, and each layer no other pullable image has, in
    every manifest that lists them, until an admin releases this image."""
    repository, digest = image_ref(request)
    body = await read_body(request, ReasonBody)
    who = actor(request, body.actor, body.reason)
    svc = services(request)
    async with svc.db() as session, session.begin():
        current = await verdicts.get(session, repository, digest)
        if current is None:
            raise AdminError(AdminCode.CONFLICT, _no_verdict(repository, digest))
        if current.state in (State.QUARANTINED, State.PENDING):
            raise AdminError(
                AdminCode.CONFLICT,
                f"{repository}@{digest} is {current.state} and cannot be pulled; there is "
                "nothing to re-quarantine",
            )
        held = await content.hold_content(session, repository, digest, who, body.reason)
        old, new = await verdicts.requarantine(session, repository, digest, who, body.reason)
        holder = f"{repository}@{digest}"
        why = lifecycle.inherited_hold_reason(holder, who, body.reason)
        others = [k for k in await content.referencing(session, held) if k != (repository, digest)]
        changed = await verdicts.hold_inherited(session, others, who, why)
        stored = await verdicts.get(session, repository, digest)
    assert stored is not None
    policy = svc.policies.match(repository, stored.origin)
    await svc.bus.publish(
        VerdictChange(
            "requarantined", repository, digest, old, new, who, body.reason, policy=policy.name
        )
    )
    for other_repository, other, before in changed:
        await svc.bus.publish(
            VerdictChange(
                "requarantined", other_repository, other, before, State.QUARANTINED, who, why
            )
        )
    for other_repository, other in others:
        why = f"content held with {holder}"
        await svc.verification.submit(other_repository, other, why, identity=jobs.admin(who))
    assert stored is not None
    return ok(verdict_json(stored))


async def _queue(svc: Services, verdict: VerdictView, who: str, why: str | None) -> None:
    """Queue one rescan. ``submit`` leaves an existing verdict alone (last known good): the
    image stays as pullable as it was until the new result lands."""
    reason = f"rescan requested by {who}" + (f": {why}" if why else "")
    await svc.verification.submit(
        verdict.repository, verdict.digest, reason, identity=jobs.admin(who)
    )
    await svc.bus.publish(
        VerdictChange(
            "rescan-requested",
            verdict.repository,
            verdict.digest,
            verdict.state,
            verdict.state,
            who,
            reason,
            policy=verdict.policy,
        )
    )


async def rescan(request: web.Request) -> web.StreamResponse:
    """POST /images/{repository}@{digest}/rescan : verify again with today's verifiers."""
    repository, digest = image_ref(request)
    body = await read_body(request, RescanBody)
    who = actor(request, body.actor, body.reason or "rescan")
    svc = services(request)
    current = await svc.verification.verdict(repository, digest)
    if current is None:
        raise AdminError(AdminCode.CONFLICT, _no_verdict(repository, digest))
    await _queue(svc, current, who, body.reason)
    return ok({"queued": 1, "images": [_key(current)]}, status=202)


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
            await _queue(svc, verdict, who, body.reason)
            count += 1
    return ok({"queued": count, "repository": body.repository}, status=202)


def _key(verdict: VerdictView) -> dict[str, Any]:
    return {"repository": verdict.repository, "digest": verdict.digest, "state": verdict.state}
