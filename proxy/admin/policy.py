"""``/policies``: the policy in force for a repository (with the stored waivers in it);
``/policy/test``: what would change if these policies were applied, changing nothing; and
``/policy/reevaluate``: apply the configured policies to verdicts decided under other versions.

Each stored verdict is decided again by ``verifiers.policy.decide`` from the outcomes and findings
stored with it, so both answer for the same inputs the real decision had, without fetching or
scanning anything. The dry-run only reads; re-evaluation (``services.reevaluate``, which the
gatekeeper also runs at start-up) writes new verdicts and publishes their changes.
"""

from __future__ import annotations

import logging

from aiohttp import web

from config.policy import Policy
from config.remotes import LOCAL
from oci.errors import OCIError
from proxy.admin.access import require, require_everything
from proxy.admin.bodies import PolicyReevaluateBody, PolicyTestBody
from proxy.admin.common import (
    actor,
    ok,
    query_repository,
    read_body,
    services,
    verdict_pages,
)
from proxy.admin.errors import AdminCode, AdminError
from proxy.admin.models_policy import (
    EffectivePolicy,
    PolicyChange,
    PolicyList,
    PolicyReevaluateResult,
    PolicyTestResult,
)
from proxy.admin.waivers import reevaluation
from proxy.context import info
from proxy.names import check_name
from proxy.state import Services
from services.policybook import PolicySource, load_book
from services.reevaluate import after_policy_change
from services.stored_outcomes import StoredDataError, decide_stored, held_in, rebuild_outcomes
from storage import verdicts
from storage.verdicts import VerdictView
from verifiers import lifecycle
from verifiers.lifecycle import State
from verifiers.pipeline import Outcome

log = logging.getLogger("gatekeeper.admin")


def would_be(
    verdict: VerdictView, policies: PolicySource, outcomes: list[Outcome]
) -> tuple[str, Policy, tuple[str, ...]]:
    """The state a new decision would leave: an unexpired release survives a failing decision,
    as it does when the verification service stores one."""
    policy = policies.match(verdict.repository, verdict.origin)
    current = verdict.effective_state()
    decision = decide_stored(policy, verdict, outcomes)
    held = (verdict.held_by is not None and current == State.QUARANTINED) or held_in(outcomes)
    state = lifecycle.settle(current, decision.state, held=held, released=current == State.RELEASED)
    return state, policy, decision.reasons


async def test_policies(request: web.Request) -> web.StreamResponse:
    """POST /policy/test : the verdicts these policies would change, and how. The stored
    waivers apply with them, as they do with the configured policies."""
    body = await read_body(request, PolicyTestBody)
    svc = services(request)
    configured = body.policies if body.policies is not None else svc.settings.policies
    policies = await load_book(svc.db, configured)
    changes: list[PolicyChange] = []
    examined = pending = unreadable = 0
    async for batch in verdict_pages(svc, None):
        keys = [(v.repository, v.digest) for v in batch]
        async with svc.db() as session:
            findings = await verdicts.findings_of(session, keys)
        for verdict in batch:
            if verdict.state == State.PENDING or not verdict.outcomes:
                pending += 1
                continue
            try:
                outcomes = rebuild_outcomes(verdict, findings[(verdict.repository, verdict.digest)])
            except StoredDataError as exc:
                log.warning("policy test skips %s@%s: %s", verdict.repository, verdict.digest, exc)
                unreadable += 1
                continue
            examined += 1
            state, policy, reasons = would_be(verdict, policies, outcomes)
            current = verdict.effective_state()
            if state != current:
                changes.append(
                    PolicyChange(
                        repository=verdict.repository,
                        digest=verdict.digest,
                        current=current,
                        would_be=State(state),
                        policy=policy.name,
                        reasons=list(reasons),
                    )
                )
    return ok(
        PolicyTestResult(
            source="request" if body.policies is not None else "settings",
            examined=examined,
            skipped_pending=pending,
            skipped_unreadable=unreadable,
            changes=changes,
        )
    )


async def reevaluate_policies(request: web.Request) -> web.StreamResponse:
    """POST /policy/reevaluate : decide again, from stored findings, every verdict (of one
    repository, or all) whose recorded policy version is not the one that now applies."""
    body = await read_body(request, PolicyReevaluateBody)
    if body.repository is not None:
        try:
            info(request).repository = check_name(body.repository)
        except OCIError as exc:
            raise AdminError(AdminCode.INVALID_FIELD, f"repository: {exc.message}") from exc
    actor(request, body.actor, body.reason or "policy re-evaluation")
    svc = services(request)
    report = await after_policy_change(
        svc.db, svc.settings.policies, repository=body.repository, publish=svc.bus.publish
    )
    return ok(PolicyReevaluateResult(**dict(reevaluation(report)), repository=body.repository))


async def effective_policies(request: web.Request) -> web.StreamResponse:
    """GET /policies?repository=&origin= : the policy in force for images of one repository
    from one origin (the settings file's, with the stored waivers that apply there), for a
    reader of that repository; the origin defaults to the one its images get when they are not
    pushed here (its remote's, or ``local``). Without a repository, the settings file's
    policies, for a reader of every repository."""
    repository = query_repository(request)
    svc = services(request)
    if repository is None:
        require_everything(request, "the list of every policy")
        return ok(PolicyList(policies=list(svc.settings.policies)))
    require(request, repository)
    origin = _query_origin(request, svc) or svc.verification.origin(repository, None)
    policy = svc.policies.match(repository, origin)
    return ok(
        EffectivePolicy(repository=repository, origin=origin, policy=policy, version=policy.version)
    )


def _query_origin(request: web.Request, svc: Services) -> str | None:
    origin = request.query.get("origin")
    if origin is None:
        return None
    known = [LOCAL, *(remote.name for remote in svc.settings.remotes)]
    if origin not in known:
        raise AdminError(
            AdminCode.BAD_REQUEST, f"origin: one of {', '.join(known)} (not {origin[:100]!r})"
        )
    return origin
