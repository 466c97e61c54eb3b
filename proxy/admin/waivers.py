"""``/waivers``: accept a finding within a repository pattern at run time, list waivers (the
stored ones next to the settings file's) and withdraw one.

A waiver is made within what its author administers (a team admin on ``team/*`` waives in
``team/app`` or ``team/*``, never in ``*``) and stored; the policies in force pick it up
(``services.policybook``), and the verdicts it touches are decided again at once from their
stored findings, before the answer is sent: no layer is read, no upstream request made. The
changes are published as after any policy change (the access log, webhooks). An admin's hold
stays a hold whatever is waived (``verifiers.lifecycle``: hold > release > verdict).
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from config.policy import Policy, Waiver, match_policy
from config.remotes import LOCAL
from proxy.admin import actions
from proxy.admin.access import require, require_pattern, rights
from proxy.admin.bodies import ReasonBody, WaiverBody
from proxy.admin.common import actor, ok, query_repository, read_body, services
from proxy.admin.errors import AdminCode, AdminError
from proxy.admin.models_policy import (
    Reevaluation,
    SettingsWaiverOut,
    StoredWaiverOut,
    WaiverChange,
    Waivers,
)
from proxy.auth.rights import Scope
from proxy.context import info
from services.reevaluate import Report
from storage import waivers
from storage.timeutil import now as utcnow
from storage.timeutil import utc
from storage.waivers import Status, StoredWaiver


def stored_out(waiver: StoredWaiver, moment: datetime) -> StoredWaiverOut:
    return StoredWaiverOut(
        source="database",
        id=waiver.id,
        finding=waiver.finding,
        scope=waiver.scope,
        reason=waiver.reason,
        author=waiver.author,
        created_at=waiver.created_at,
        expires_at=waiver.expires_at,
        status=waiver.status(moment),
        withdrawn_at=waiver.withdrawn_at,
        withdrawn_by=waiver.withdrawn_by,
        withdraw_reason=waiver.withdraw_reason,
    )


def settings_out(policy: Policy, waiver: Waiver, moment: datetime) -> SettingsWaiverOut:
    expires = utc(waiver.expires)  # the settings file may omit the offset: UTC, as decided
    expired = expires is not None and expires <= moment
    return SettingsWaiverOut(
        source="settings",
        policy=policy.name,
        finding=waiver.finding,
        scope=", ".join(waiver.repositories),
        reason=waiver.reason,
        author=waiver.author,
        expires_at=expires,
        status=Status.EXPIRED if expired else Status.ACTIVE,
    )


def reevaluation(report: Report) -> Reevaluation:
    """What deciding verdicts again did, as the API reports it."""
    return Reevaluation(
        reevaluated=report.examined,
        changed=report.changed,
        quarantined=report.quarantined,
        notified=report.notified,
        skipped_unreadable=report.skipped,
        queued=len(report.needs_verification),
        seconds=round(report.seconds, 3),
    )


def _settings_waivers(
    policies: list[Policy], repository: str | None, scope: Scope, moment: datetime
) -> list[SettingsWaiverOut]:
    """The settings file's waivers that concern ``repository`` (the one policy matching it),
    or, without one, those the reader's scope touches."""
    found = []
    for policy in policies:
        for waiver in policy.waivers:
            if repository is not None:
                concerns = Scope(tuple(waiver.repositories)).covers(repository)
            else:
                concerns = scope.everything or (
                    any(scope.touches(p) for p in policy.repositories)
                    and any(scope.touches(p) for p in waiver.repositories)
                )
            if concerns:
                found.append(settings_out(policy, waiver, moment))
    return found


async def list_waivers(request: web.Request) -> web.StreamResponse:
    """GET /waivers?repository=&all= : the waivers that concern one repository, or those
    within what the caller may read; active ones only unless ``all=true``."""
    repository = query_repository(request)
    include_inactive = request.query.get("all", "") in ("1", "true", "yes")
    if repository is not None:
        require(request, repository)
    svc, scope, moment = services(request), rights(request).reads, utcnow()
    async with svc.db() as session:
        stored = await waivers.listed(session, include_inactive=include_inactive)
    if repository is not None:
        chosen = [w for w in stored if Scope((w.scope,)).covers(repository)]
        # Its images pushed here, and those fetched from the remote serving it, if any.
        origins = dict.fromkeys([svc.verification.origin(repository, None), LOCAL])
        matched = [match_policy(svc.settings.policies, repository, o) for o in origins]
        configured = list({policy.name: policy for policy in matched}.values())
    else:
        chosen = [w for w in stored if scope.everything or scope.touches(w.scope)]
        configured = list(svc.settings.policies)
    listing: list[StoredWaiverOut | SettingsWaiverOut] = [stored_out(w, moment) for w in chosen]
    listing += _settings_waivers(configured, repository, scope, moment)
    if not include_inactive:
        listing = [w for w in listing if w.status == Status.ACTIVE]
    return ok(Waivers(waivers=listing))


async def waive(request: web.Request) -> web.StreamResponse:
    """POST /waivers : make a waiver in the caller's scope and decide again, from stored
    findings, every verdict it touches."""
    body = await read_body(request, WaiverBody)
    info(request).repository = body.scope  # the row says where, as for an image action
    require_pattern(request, body.scope)
    who = actor(request, body.actor, body.reason)
    done = await actions.make_waiver(
        services(request),
        finding=body.finding,
        scope=body.scope,
        reason=body.reason,
        who=who,
        expires=body.expiry(utcnow()),
    )
    return ok(
        WaiverChange(
            waiver=stored_out(done.waiver, utcnow()), reevaluation=reevaluation(done.report)
        ),
        status=201,
    )


async def withdraw(request: web.Request) -> web.StreamResponse:
    """POST /waivers/{id}/withdraw : withdraw a stored waiver in the caller's scope; what it
    let through is decided again and quarantined where its findings block."""
    waiver_id = int(request.match_info["id"])
    body = await read_body(request, ReasonBody)
    svc = services(request)
    current = None
    if waiver_id < 2**63:  # beyond a BIGINT no waiver can be
        async with svc.db() as session:
            current = await waivers.get(session, waiver_id)
    if current is None:
        raise AdminError(AdminCode.NOT_FOUND, f"there is no stored waiver {waiver_id}")
    info(request).repository = current.scope
    require_pattern(request, current.scope)
    who = actor(request, body.actor, body.reason)
    async with svc.db() as session, session.begin():
        done = await waivers.withdraw(session, waiver_id, who, body.reason)
    if done is None:
        raise AdminError(AdminCode.CONFLICT, f"waiver {waiver_id} was already withdrawn")
    report = await svc.policies.apply(f"waiver {waiver_id} of {done.finding} withdrawn by {who}")
    return ok(WaiverChange(waiver=stored_out(done, utcnow()), reevaluation=reevaluation(report)))
