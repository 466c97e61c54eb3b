"""The pull gate: may this manifest or blob leave the registry?

Decisions hang on three events (a manifest pulled, a blob pulled, a blob mounted or a manifest
re-pushed elsewhere) and all read the same per-digest verdict. Whatever cannot be decided (the
database is down, the verdict is still pending after the hold) is denied: the gate fails closed.
A denial is ``DENIED`` with a message a person at a terminal can act on and a machine-readable
``detail``, identical for tag, digest, HEAD and GET.
"""

from __future__ import annotations

import logging

from aiohttp import web

from config.policy import Policy, match_policy
from proxy.auth.http import bypasses_quarantine
from proxy.context import info
from proxy.errors import Code, OCIError
from proxy.state import Services, services
from storage import jobs, verdicts
from storage.db import DATABASE_ERRORS
from storage.verdicts import VerdictView

log = logging.getLogger("gatekeeper.gate")


def _release_hint(repository: str, digest: str) -> str:
    return (
        f"an admin can release it with `gatekeeper quarantine release {repository}@{digest} "
        '--reason "..."`'
    )


def _deny(
    repository: str, digest: str, state: str, reasons: list[str], policy: Policy, message: str
) -> OCIError:
    return OCIError(
        Code.DENIED,
        message,
        {
            "repository": repository,
            "digest": digest,
            "state": state,
            "reasons": reasons,
            "policy": policy.name,
        },
    )


def _unavailable(repository: str, digest: str, exc: Exception) -> OCIError:
    log.error("gate cannot read verdicts (%s); denying %s@%s", exc, repository, digest)
    return OCIError(
        Code.DENIED_UNAVAILABLE,
        f"{digest} cannot be verified right now (the gatekeeper's database is unavailable); "
        "try again shortly",
        {"repository": repository, "digest": digest, "state": "unknown"},
    )


def _record(request: web.Request, decision: str, reason: str | None = None) -> None:
    record = info(request)
    record.decision = decision
    if reason:
        record.reason = reason


async def check_manifest(request: web.Request, repository: str, digest: str) -> None:
    """Allow the pull of manifest ``digest`` or raise DENIED. Unknown images are verified now
    (first pull) and pending ones are held as long as the policy allows."""
    svc = services(request)
    policy = match_policy(svc.settings.policies, repository)
    if policy.deny_all:
        message = (
            f"{digest} cannot be pulled: no policy allows repository {repository} "
            "(an unmatched repository is denied; add a policy for it)"
        )
        _record(request, "deny", message)
        raise _deny(repository, digest, "no-policy", [], policy, message)
    try:
        verdict = await _current_verdict(svc, policy, repository, digest)
    except DATABASE_ERRORS as exc:
        raise _unavailable(repository, digest, exc) from exc
    state = verdict.effective_state() if verdict else "pending"
    if verdict is not None and verdict.pullable():
        _record(request, "allow", f"{state} under policy {verdict.policy or policy.name}")
        return
    if policy.mode == "warn":
        _record(request, "warn", f"{state}; warn mode does not block")
        return
    reasons = list(verdict.reasons) if verdict else []
    if bypasses_quarantine(request, repository):
        _record(request, "bypass", f"quarantine-reader pulled a {state} image")
        log.warning(
            "%s bypassed the gate for %s@%s (%s)", info(request).identity, repository, digest, state
        )
        return
    if state == "pending":
        message = f"{digest} is still being verified (policy {policy.name}); try again shortly"
    else:
        summary = "; ".join(reasons[:3]) or "verification failed"
        message = f"{digest} is quarantined: {summary}; {_release_hint(repository, digest)}"
    _record(request, "deny", message)
    raise _deny(repository, digest, state, reasons, policy, message)


async def _current_verdict(
    svc: Services, policy: Policy, repository: str, digest: str
) -> VerdictView | None:
    verification = svc.verification
    verdict = await verification.verdict(repository, digest, cached=True)
    first_pull = verdict is None
    if first_pull:
        await verification.submit(
            repository, digest, "first pull of an image not seen before", identity=jobs.FIRST_PULL
        )
        verdict = await verification.verdict(repository, digest)
    if verdict is None or verdict.state != "pending":
        return verdict
    if policy.mode == "warn":
        return verdict
    hold = policy.hold_seconds if policy.pending == "hold" else 0.0
    if first_pull:
        hold = max(hold, svc.settings.verification.first_pull_hold_seconds)
    if hold <= 0:
        return verdict
    await verification.expedite(repository, digest)
    return await verification.wait_for_verdict(repository, digest, hold)


async def check_blob(request: web.Request, repository: str, digest: str) -> None:
    """A blob leaves only as part of a pullable image of this repository."""
    svc = services(request)
    policy = match_policy(svc.settings.policies, repository)
    try:
        async with svc.db() as session:
            allowed = await verdicts.blob_pullable(session, repository, digest)
    except DATABASE_ERRORS as exc:
        raise _unavailable(repository, digest, exc) from exc
    if allowed:
        _record(request, "allow")
        return
    if policy.mode == "warn" and not policy.deny_all:
        _record(request, "warn", "not part of a pullable image; warn mode does not block")
        return
    if bypasses_quarantine(request, repository):
        _record(request, "bypass", "quarantine-reader pulled a blob of a non-pullable image")
        return
    message = (
        f"blob {digest} is not part of any verified image of {repository} (it belongs only "
        "to quarantined or pending images, or to none)"
    )
    _record(request, "deny", message)
    raise _deny(repository, digest, "not-pullable", [], policy, message)


async def check_reuse(request: web.Request, repository: str, digest: str) -> None:
    """Quarantined content cannot be laundered by pushing the same digest into another
    repository: the push itself is refused."""
    svc = services(request)
    try:
        async with svc.db() as session:
            blocked = await verdicts.blocked_elsewhere(session, digest)
    except DATABASE_ERRORS as exc:
        raise _unavailable(repository, digest, exc) from exc
    others = [v for v in blocked if v.repository != repository]
    if not others:
        return
    first = others[0]
    policy = match_policy(svc.settings.policies, repository)
    message = (
        f"{digest} is quarantined in {first.repository} and cannot be pushed elsewhere: "
        f"{'; '.join(first.reasons[:2]) or 'verification failed'}; "
        f"{_release_hint(first.repository, digest)}"
    )
    _record(request, "deny", message)
    raise _deny(repository, digest, "quarantined", list(first.reasons), policy, message)
