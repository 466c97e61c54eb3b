"""What an admin can do to an image or a waiver, as functions of the services: the admin API's
handlers (``proxy.admin.images``, ``proxy.admin.waivers``) and the web console (``proxy.ui``)
both call these, so a release means the same from a script as from a browser.

The caller has already checked that the actor may act on the repository (``proxy.admin.access``)
and validated the inputs (``proxy.admin.bodies``); these functions refuse what the state of the
image forbids (:class:`AdminError` ``CONFLICT``), change it, and publish the change on the event
bus, which writes the verdict-change row of the access log and fires the webhooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from proxy.admin.errors import AdminCode, AdminError
from proxy.state import Services
from services.events import VerdictChange
from services.reevaluate import Report
from storage import content, jobs, verdicts, waivers
from storage.verdicts import VerdictView
from storage.waivers import StoredWaiver
from verifiers import lifecycle
from verifiers.lifecycle import State


def no_verdict(repository: str, digest: str) -> str:
    return (
        f"the gatekeeper has no verdict for {repository}@{digest}: it has never seen it pushed "
        "or pulled through the gatekeeper (a pull verifies it)"
    )


async def release_image(
    svc: Services, repository: str, digest: str, who: str, reason: str, expires: datetime | None
) -> VerdictView:
    """Let a quarantined (or pending) image out, until ``expires`` if given, after which the
    sweeper quarantines it again. Its hold on content is lifted too, so the manifests that
    inherited it are verified again."""
    policy = await svc.verification.policy_of(repository, digest)
    if policy.deny_all:
        raise AdminError(
            AdminCode.CONFLICT,
            f"no policy matches {repository}@{digest} (its repository and origin), so it "
            "cannot be pulled and a release would change nothing; add a policy for it",
        )
    async with svc.db() as session, session.begin():
        current = await verdicts.get(session, repository, digest)
        if current is None:
            raise AdminError(AdminCode.CONFLICT, no_verdict(repository, digest))
        if current.effective_state() == State.PASSED:
            raise AdminError(
                AdminCode.CONFLICT,
                f"{repository}@{digest} passed verification; there is nothing to release",
            )
        await _refuse_inherited_hold(session, repository, digest)
        old, new = await verdicts.release(session, repository, digest, who, reason, expires)
        freed = await content.lift_holds(session, repository, digest)
        inherited = await content.referencing(session, freed) if freed else []
        stored = await verdicts.get(session, repository, digest)
    until = f" (until {expires.isoformat()})" if expires else ""
    await svc.bus.publish(
        VerdictChange(
            "released", repository, digest, old, new, who, reason + until, policy=policy.name
        )
    )
    for other_repository, other in inherited:
        if (other_repository, other) != (repository, digest):
            why = f"the hold of {repository}@{digest} on content it holds was lifted by {who}"
            await svc.verification.submit(other_repository, other, why, identity=jobs.admin(who))
    assert stored is not None
    return stored


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


async def requarantine_image(
    svc: Services, repository: str, digest: str, who: str, reason: str
) -> VerdictView:
    """Withdraw a release or a pass. The hold covers the image's content: its config, and each
    layer no other pullable image has, in every manifest that lists them, until an admin
    releases this image."""
    async with svc.db() as session, session.begin():
        current = await verdicts.get(session, repository, digest)
        if current is None:
            raise AdminError(AdminCode.CONFLICT, no_verdict(repository, digest))
        if current.state in (State.QUARANTINED, State.PENDING):
            raise AdminError(
                AdminCode.CONFLICT,
                f"{repository}@{digest} is {current.state} and cannot be pulled; there is "
                "nothing to re-quarantine",
            )
        held = await content.hold_content(session, repository, digest, who, reason)
        old, new = await verdicts.requarantine(session, repository, digest, who, reason)
        holder = f"{repository}@{digest}"
        why = lifecycle.inherited_hold_reason(holder, who, reason)
        others = [k for k in await content.referencing(session, held) if k != (repository, digest)]
        changed = await verdicts.hold_inherited(session, others, who, why)
        stored = await verdicts.get(session, repository, digest)
    assert stored is not None
    policy = svc.policies.match(repository, stored.origin)
    await svc.bus.publish(
        VerdictChange(
            "requarantined", repository, digest, old, new, who, reason, policy=policy.name
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
    return stored


async def queue_rescan(svc: Services, verdict: VerdictView, who: str, why: str | None) -> None:
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


async def rescan_image(
    svc: Services, repository: str, digest: str, who: str, why: str | None
) -> VerdictView:
    """Verify one image again with today's verifiers; returns its verdict as it stands."""
    current = await svc.verification.verdict(repository, digest)
    if current is None:
        raise AdminError(AdminCode.CONFLICT, no_verdict(repository, digest))
    await queue_rescan(svc, current, who, why)
    return current


@dataclass(frozen=True)
class WaiverMade:
    """A waiver just stored and what deciding its verdicts again did."""

    waiver: StoredWaiver
    report: Report


async def make_waiver(
    svc: Services,
    *,
    finding: str,
    scope: str,
    reason: str,
    who: str,
    expires: datetime | None,
) -> WaiverMade:
    """Store a waiver and decide again, from stored findings, every verdict it touches."""
    async with svc.db() as session, session.begin():
        made = await waivers.add(
            session, finding=finding, scope=scope, reason=reason, author=who, expires_at=expires
        )
    report = await svc.policies.apply(f"waiver {made.id} of {made.finding} made by {who}")
    return WaiverMade(made, report)
