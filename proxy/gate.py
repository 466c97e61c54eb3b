"""The pull gate: may this manifest or blob leave the registry?

Decisions hang on the ways out of the registry (a manifest pulled or checked, a blob pulled or
checked, a blob mounted elsewhere, a manifest re-pushed elsewhere, referrers listed), and every
one is judged on content, never on the labels of the request:

- a **manifest** leaves only while its verdict is pullable (``verifiers.lifecycle``); its
  verdict already weighs what its content is, the holds on its blobs, what its blobs were
  found to carry in other images, and the manifests it depends on (``services.examine``);
- a **blob** leaves only as part of a pullable manifest of the repository, and only if the
  blob itself is not held by an admin and carries no finding of its own that blocks under the
  repository's policy, unless the manifest it leaves with was decided knowing that finding (a
  ``notify`` policy, an admin's release);
- a **fresh upload** (a blob uploaded into the repository through the gatekeeper lately, which
  no manifest of it lists yet) may be read back by an identity that may push to the
  repository (clients verify what they uploaded before pushing the manifest); never by a
  pull-only one, never a blob that reached the registry another way (nobody verified it),
  never in a repository no policy matches, and never while any image, in any repository,
  that lists it is quarantined, pending or unverified, nor while it is held or blocked by
  findings of its own;
- **referrers** of a manifest are listed only while it is pullable.

A blob the gate refuses and the repository does not hold at all is answered 404
``BLOB_UNKNOWN``, as the registry would: only then is the registry asked, so a 404 tells the
caller (who may pull the repository) that the repository does not hold that digest, and
nothing more: not whether the digest is quarantined, held or blocked elsewhere, which a 403
for a blob the repository does not even hold would have revealed. That a repository holds a
digest is not quarantined content: a 403 says so, with why the blob may not leave.

Whatever cannot be decided (the database is down, the verdict is still pending after the hold)
is denied: the gate fails closed. A denial is ``DENIED`` with a message a person at a terminal
can act on and a machine-readable ``detail``, identical for tag, digest, HEAD and GET.

The policy that applies is the one for the image's repository and origin (``config.remotes``:
pushed here, or fetched from a named remote). A pull of an image still being verified is held
for the policy's ``hold_seconds``; one from a remote at least that remote's ``hold_seconds``,
however many pulls of it wait (they all wait on the one verification), and any other image
never seen (a first pull) at least ``verification.first_pull_hold_seconds``. When the hold
runs out the pull is told roughly when to come back (``services.eta``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from config.policy import Policy
from config.remotes import LOCAL
from config.text import visible
from oci.errors import Code, OCIError
from proxy.auth.http import bypasses_quarantine, may
from proxy.context import info
from proxy.state import Services, services
from services import eta
from services.inline import HeldManifest
from storage import content, fresh_uploads, jobs, verdicts
from storage.content import BlobFinding
from storage.db import DATABASE_ERRORS, reader
from storage.verdicts import VerdictView
from verifiers import lifecycle
from verifiers.lifecycle import State
from verifiers.policy import blocking

log = logging.getLogger("gatekeeper.gate")


def _release_hint(repository: str, digest: str) -> str:
    return (
        f"an admin can release it with `gatekeeper quarantine release {repository}@{digest} "
        '--reason "..."`'
    )


def _deny(
    repository: str,
    digest: str,
    state: str,
    reasons: list[str],
    policy: Policy,
    message: str,
    *,
    retry_after: int | None = None,
) -> OCIError:
    """The DENIED answer. Reasons quote what images hold (file paths of findings): podman and
    skopeo print the message on a terminal, so control and bidi characters arrive escaped.
    ``retry_after``: seconds until trying again is worth it (an image still being verified),
    also sent as ``Retry-After``."""
    detail: dict[str, object] = {
        "repository": repository,
        "digest": digest,
        "state": state,
        "reasons": [visible(r) for r in reasons],
        "policy": policy.name,
    }
    if retry_after is None:
        return OCIError(Code.DENIED, visible(message), detail)
    detail["retry_after_seconds"] = retry_after
    headers = {"Retry-After": str(retry_after)}
    return OCIError(Code.DENIED, visible(message), detail, headers=headers)


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


# -- manifests ---------------------------------------------------------------------------------


async def check_manifest(
    request: web.Request, repository: str, digest: str, held: HeldManifest | None = None
) -> None:
    """Allow the pull of manifest ``digest`` or raise DENIED. Unknown images are verified now
    (first pull) and pending ones are held as long as the policy allows. ``held``: the
    manifest's bytes as the handler read them (a first pull verified here starts from them)."""
    svc = services(request)
    unmatched = _unmatched(svc, repository)
    if unmatched is not None:
        message = (
            f"{digest} cannot be pulled: no policy allows repository {repository} "
            "(an unmatched repository is denied; add a policy for it)"
        )
        _record(request, "deny", message)
        raise _deny(repository, digest, "no-policy", [], unmatched, message)
    try:
        verdict = await svc.verification.verdict(repository, digest, cached=True)
        origin = svc.verification.origin(repository, verdict)
        policy = svc.policies.match(repository, origin)
        if policy.deny_all:
            message = (
                f"{digest} cannot be pulled: no policy allows images of repository "
                f"{repository} from {_from(origin)} (an unmatched image is denied; add a "
                "policy for it)"
            )
            _record(request, "deny", message)
            raise _deny(repository, digest, "no-policy", [], policy, message)
        verdict = await _current_verdict(svc, policy, origin, repository, digest, verdict, held)
    except DATABASE_ERRORS as exc:
        raise _unavailable(repository, digest, exc) from exc
    state = verdict.effective_state() if verdict else State.PENDING
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
    if state == State.PENDING:
        await _still_pending(request, repository, digest, origin, reasons, policy)
    message = _manifest_message(repository, digest, state, reasons, policy)
    _record(request, "deny", message)
    raise _deny(repository, digest, state, reasons, policy, message)


def _unmatched(svc: Services, repository: str) -> Policy | None:
    """The deny-all policy when no policy matches ``repository`` for any origin one of its
    images can have (``local``, or the remote serving it): denied without a database read, and
    without queueing any verification."""
    derived = svc.verification.origin(repository, None)
    policies = [svc.policies.match(repository, origin) for origin in {LOCAL, derived}]
    return policies[0] if all(p.deny_all for p in policies) else None


def _from(origin: str) -> str:
    return "this registry (pushed here)" if origin == LOCAL else f"remote {origin}"


async def _still_pending(
    request: web.Request,
    repository: str,
    digest: str,
    origin: str,
    reasons: list[str],
    policy: Policy,
) -> None:
    """The hold ran out with the image still pending: DENIED, with roughly when to come back
    (``Retry-After``) and what is happening meanwhile."""
    svc = services(request)
    try:
        guess = await svc.verification.estimate(repository, digest)
    except DATABASE_ERRORS as exc:
        raise _unavailable(repository, digest, exc) from exc
    where = "" if origin == LOCAL else f", fetched from {origin}"
    message = (
        f"{digest} is still being verified (policy {policy.name}{where}; {guess.status}); "
        f"try again in about {eta.span(guess.seconds)}"
    )
    _record(request, "deny", message)
    raise _deny(
        repository, digest, State.PENDING, reasons, policy, message, retry_after=guess.seconds
    )


def _manifest_message(
    repository: str, digest: str, state: State, reasons: list[str], policy: Policy
) -> str:
    if state == State.PENDING:
        return f"{digest} is still being verified (policy {policy.name}); try again shortly"
    summary = "; ".join(reasons[:3]) or "verification failed"
    return f"{digest} is quarantined: {summary}; {_release_hint(repository, digest)}"


async def _current_verdict(
    svc: Services,
    policy: Policy,
    origin: str,
    repository: str,
    digest: str,
    verdict: VerdictView | None,
    held: HeldManifest | None = None,
) -> VerdictView | None:
    """The verdict to decide the pull on: an image never seen is verified (once, however many
    pulls race for it, in this process or any other), and a pending one is held
    (:func:`hold_seconds`). A first pull whose policy reads no layer is verified here, while it
    is held (``services.inline``); any other is queued for the workers."""
    verification = svc.verification
    first_pull = verdict is None
    hold = (
        0.0 if policy.mode == "warn" else hold_seconds(svc, policy, origin, first_pull=first_pull)
    )
    if verdict is not None and verdict.state != State.PENDING:
        return verdict
    queued = False
    if first_pull and hold > 0 and verification.runs_inline(policy):
        reason = "first pull of an image not seen before"
        found = await verification.verify_inline(repository, digest, reason, held, hold)
        if found is not None:
            return found
        # Another pull made its verdict first: wait for that verification, wherever it runs.
    elif first_pull:
        # Queued ahead of the rest when the pull is to wait for it: one transaction, not two.
        queued = await verification.submit(
            repository,
            digest,
            "first pull of an image not seen before",
            identity=jobs.FIRST_PULL,
            first_sight=True,
            waited_for=hold > 0,
        )
    if hold <= 0:
        return verdict if not first_pull else await verification.verdict(repository, digest)
    if not queued:
        await verification.expedite(repository, digest)
    # The wait reads the verdict first thing: no read of it between the queueing and the wait.
    return await verification.wait_for_verdict(repository, digest, hold)


def hold_seconds(svc: Services, policy: Policy, origin: str, *, first_pull: bool) -> float:
    """How long a pull of a pending image waits for its verdict: the policy's hold (``pending
    = "hold"``); for an image from a remote at least that remote's hold, for each of its pulls
    (the registry fetches it while it is verified, and they all wait on that one
    verification); for any other image never seen, at least the first-pull hold."""
    hold = policy.hold_seconds if policy.pending == "hold" else 0.0
    remote = svc.verification.remote(origin)
    if remote is not None:
        return max(hold, remote.hold_seconds)
    if first_pull:
        hold = max(hold, svc.settings.verification.first_pull_hold_seconds)
    return hold


async def check_referrers(request: web.Request, repository: str, subject: str) -> None:
    """The referrers of a manifest (its signatures, SBOMs) say what it is: they are listed only
    while it may be pulled. A subject the gatekeeper has no verdict for is not verified here
    (a referrers query must not queue work); each listed referrer is gated when pulled."""
    svc = services(request)
    try:
        verdict = await svc.verification.verdict(repository, subject, cached=True)
    except DATABASE_ERRORS as exc:
        raise _unavailable(repository, subject, exc) from exc
    policy = svc.policies.match(repository, svc.verification.origin(repository, verdict))
    if verdict is None or verdict.pullable() or policy.mode == "warn":
        _record(request, "allow")
        return
    state = verdict.effective_state()
    if bypasses_quarantine(request, repository):
        _record(request, "bypass", f"quarantine-reader listed referrers of a {state} image")
        return
    message = _manifest_message(repository, subject, state, list(verdict.reasons), policy)
    message = f"the referrers of {subject} are not listed: {message}"
    _record(request, "deny", message)
    raise _deny(repository, subject, state, list(verdict.reasons), policy, message)


# -- blobs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobJudgement:
    """Whether one blob may leave one repository, and why not."""

    allowed: bool
    state: str
    """``pullable``, or why not: ``not-pullable`` (no pullable manifest lists it), ``held``,
    ``blocked`` (findings of its own)."""
    message: str = ""
    reasons: tuple[str, ...] = ()
    cacheable: bool = True
    """False when the answer rests on a release that may expire."""
    policy: Policy | None = None
    """The policy it was judged under (that of the images it would leave with), when one was."""


PolicyFor = Callable[[str], Policy]
"""The policy of the repository for images of an origin."""


def _held(digest: str, hold: content.Hold) -> BlobJudgement:
    why = lifecycle.inherited_hold_reason(hold.holder, hold.actor, hold.reason)
    return BlobJudgement(False, "held", f"blob {digest} is {why}", (why,))


def _not_pullable(repository: str, digest: str) -> BlobJudgement:
    return BlobJudgement(
        False,
        "not-pullable",
        f"blob {digest} is not part of any verified image of {repository} (it belongs only "
        "to quarantined or pending images, or to none)",
    )


async def judge_blob(
    session: AsyncSession,
    policy: Policy,
    repository: str,
    digest: str,
    *,
    policy_for: PolicyFor | None = None,
) -> BlobJudgement:
    """The blob rule of the module docstring, for ``digest`` in ``repository``. ``policy``
    applies to every image unless ``policy_for`` says which applies to images of each origin:
    the blob then leaves if it may leave with the pullable images of any one origin, each
    judged under its own policy."""
    holds = await content.holds_on(session, [digest])
    if holds:
        return _held(digest, holds[0])
    servers = await content.serving(session, repository, digest)
    pullable = [s for s in servers if s.state and lifecycle.pullable(s.state, s.release_expires)]
    if not pullable:
        first = policy_for(servers[0].origin) if policy_for and servers else policy
        return replace(_not_pullable(repository, digest), policy=first)
    released = [s for s in pullable if s.state == State.RELEASED]
    if released:
        # An admin let an image holding it out: the blob leaves as part of that image.
        return BlobJudgement(
            True, "pullable", cacheable=not any(s.release_expires for s in released)
        )
    by_origin: dict[str, list[str]] = {}
    for server in pullable:
        by_origin.setdefault(server.origin, []).append(server.digest)
    refused: tuple[list[BlobFinding], Policy] | None = None
    for origin, manifests in by_origin.items():
        applies = policy_for(origin) if policy_for is not None else policy
        rules = blocking(applies, repository)
        found = await content.unweighed(
            session,
            digest,
            repository=repository,
            manifests=manifests,
            severities=rules.severities,
            waived=rules.waived,
            unfixed_report=rules.unfixed_report,
        )
        if not found:
            return BlobJudgement(True, "pullable", policy=applies)
        refused = refused or (found, applies)
    assert refused is not None
    found, applies = refused
    return _blocked(applies, digest, found)


def _blocked(policy: Policy, digest: str, found: list[BlobFinding]) -> BlobJudgement:
    """The refusal of a blob whose own findings block it (``found``: the first few)."""
    first = found[0]
    finding = first.finding
    more = f" and {len(found) - 1} more" if len(found) > 1 else ""
    why = f"{finding.rule_id} ({finding.severity}: {finding.title}){more}"
    origin = f"{first.repository}@{first.digest}"
    return BlobJudgement(
        False,
        "blocked",
        f"blob {digest} carries findings that block it under policy {policy.name}: {why}, "
        f"found in {origin}; {_release_hint(first.repository, first.digest)}",
        (why,),
        policy=policy,
    )


async def judge_read_back(
    session: AsyncSession, policy: Policy, repository: str, digest: str
) -> BlobJudgement:
    """The read-back rule of the module docstring, for ``digest`` in ``repository``. Whether
    the caller may push is the caller's to check: the answer is never cached."""
    if policy.deny_all:
        return BlobJudgement(
            False, "no-policy", f"blob {digest} is not read back: no policy allows {repository}"
        )
    holds = await content.holds_on(session, [digest])
    if holds:
        return _held(digest, holds[0])
    if await content.serving(session, repository, digest):
        return _not_pullable(repository, digest)  # listed here: the blob rule alone decides
    if not await fresh_uploads.fresh(session, repository, digest):
        return BlobJudgement(
            False,
            "not-pullable",
            f"blob {digest} is not part of any verified image of {repository}, and was not "
            "uploaded into it through the gatekeeper lately (only such a blob is read back)",
        )
    other = await content.unpullable_with(session, digest)
    if other is not None:
        state = other[2] or "not verified yet"
        return BlobJudgement(
            False,
            "not-pullable",
            f"blob {digest} is part of an image that is {state} (in this or another "
            "repository): a blob of an image that may not be pulled is never read back",
        )
    rules = blocking(policy, repository)
    found = await content.unweighed(
        session,
        digest,
        repository=repository,
        manifests=[],
        severities=rules.severities,
        waived=rules.waived,
        unfixed_report=rules.unfixed_report,
    )
    if found:
        return _blocked(policy, digest, found)
    return BlobJudgement(
        True,
        "read-back",
        f"read-back of a blob no manifest of {repository} lists, by an identity that may push",
        cacheable=False,
    )


Presence = Callable[[], Awaitable[bool | None]]
"""Whether the registry holds the blob in the repository: True, False, or None (it could not
say). Asked only once the gate refuses, to tell 404 from 403."""


async def check_blob(
    request: web.Request, repository: str, digest: str, *, present: Presence
) -> None:
    """A blob leaves only as part of a pullable image of this repository, and only if it is
    neither held nor blocked by findings of its own (see :func:`judge_blob`); or, to an
    identity that may push here, as the read-back of a fresh upload (:func:`judge_read_back`)."""
    judgement = await _judgement(request, repository, digest)
    unlisted = not judgement.allowed and judgement.state == "not-pullable"
    if unlisted and may(request, repository, "push"):
        judgement = await _read_back(request, repository, digest)
    if judgement.allowed:
        _record(request, "allow", judgement.message or None)
        return
    await _refuse_blob(request, repository, digest, judgement, present)


async def check_blob_exists(
    request: web.Request, repository: str, digest: str, *, present: Presence
) -> None:
    """Blob HEAD: clients ask before uploading, so an identity that may push to the repository
    learns whether a blob is there; anyone else is judged as for GET (a pull-only identity
    must not learn the size of a quarantined layer)."""
    judgement = await _judgement(request, repository, digest)
    if judgement.allowed:
        _record(request, "allow")
        return
    if may(request, repository, "push"):
        _record(
            request, "allow", f"existence check by an identity that may push: {judgement.state}"
        )
        return
    await _refuse_blob(request, repository, digest, judgement, present)


async def _judgement(request: web.Request, repository: str, digest: str) -> BlobJudgement:
    svc = services(request)
    if svc.verification.blob_allowed(repository, digest):
        return BlobJudgement(True, "pullable")
    policy = svc.policies.match(repository, svc.verification.origin(repository, None))

    def policy_for(origin: str) -> Policy:
        return svc.policies.match(repository, origin)

    async def judge() -> BlobJudgement:
        async with reader(svc.db) as session:
            return await judge_blob(session, policy, repository, digest, policy_for=policy_for)

    generation = svc.verification.cache_generation
    try:
        judgement = await svc.verification.judge_blob_once(repository, digest, judge)
    except DATABASE_ERRORS as exc:
        raise _unavailable(repository, digest, exc) from exc
    if judgement.allowed and judgement.cacheable:
        svc.verification.remember_blob(repository, digest, generation)
    return judgement


async def _read_back(request: web.Request, repository: str, digest: str) -> BlobJudgement:
    svc = services(request)
    policy = svc.policies.match(repository)  # what a pusher uploads here is local content
    try:
        async with reader(svc.db) as session:
            return await judge_read_back(session, policy, repository, digest)
    except DATABASE_ERRORS as exc:
        raise _unavailable(repository, digest, exc) from exc


async def _refuse_blob(
    request: web.Request,
    repository: str,
    digest: str,
    judgement: BlobJudgement,
    present: Presence,
) -> None:
    svc = services(request)
    policy = judgement.policy or svc.policies.match(
        repository, svc.verification.origin(repository, None)
    )
    if policy.mode == "warn" and not policy.deny_all:
        _record(request, "warn", f"{judgement.state}; warn mode does not block")
        return
    if bypasses_quarantine(request, repository):
        _record(request, "bypass", f"quarantine-reader pulled a {judgement.state} blob")
        return
    if await present() is False:
        message = f"blob {digest} is not in repository {repository}"
        _record(request, "deny", f"{message} ({judgement.state})")
        raise OCIError(Code.BLOB_UNKNOWN, message, {"repository": repository, "digest": digest})
    _record(request, "deny", judgement.message)
    raise _deny(
        repository, digest, judgement.state, list(judgement.reasons), policy, judgement.message
    )


async def check_reuse(request: web.Request, repository: str, digest: str) -> None:
    """Quarantined content cannot be laundered by pushing the same digest into another
    repository: the push itself is refused."""
    svc = services(request)
    try:
        async with reader(svc.db) as session:
            blocked = await verdicts.blocked_elsewhere(session, digest)
    except DATABASE_ERRORS as exc:
        raise _unavailable(repository, digest, exc) from exc
    others = [v for v in blocked if v.repository != repository]
    if not others:
        return
    first = others[0]
    policy = svc.policies.match(repository, LOCAL)  # a push: what it would be pushed under
    message = (
        f"{digest} is quarantined in {first.repository} and cannot be pushed elsewhere: "
        f"{'; '.join(first.reasons[:2]) or 'verification failed'}; "
        f"{_release_hint(first.repository, digest)}"
    )
    _record(request, "deny", message)
    raise _deny(repository, digest, State.QUARANTINED, list(first.reasons), policy, message)
