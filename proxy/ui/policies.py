"""``/ui/policies``: the policy in force per repository (the settings file's, with the waivers
stored at run time), and a dry run: how one image would be decided under a changed threshold
or an extra waiver, before anything is saved.

The dry run is the admin API's ``policy test`` for one image: the verdict's stored outcomes and
findings (``services.stored_outcomes``) decided by ``proxy.admin.policy.would_be``, so it answers
for the same inputs the real decision had, reads no layer and changes nothing. Saving a waiver
is the waiver action (``proxy.ui.actions``); a threshold lives in the settings file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import select

from config.policy import Policy, Waiver
from config.remotes import LOCAL
from oci.errors import OCIError
from proxy.admin.access import require, rights
from proxy.admin.common import query_repository, query_str, services
from proxy.admin.errors import AdminCode, AdminError
from proxy.admin.policy import would_be
from proxy.context import info
from proxy.names import check_digest, check_name
from proxy.ui.forms import choice
from proxy.ui.render import page
from services.stored_outcomes import StoredDataError, rebuild_outcomes
from storage import globs, verdicts
from storage.models import Verdict
from verifiers.base import Severity

THRESHOLDS = tuple(s.name.lower() for s in Severity)
LISTED = 200


@dataclass(frozen=True)
class Fixed:
    """A policy source that answers one changed policy (the dry run's)."""

    policy: Policy

    def match(self, repository: str, origin: str = LOCAL) -> Policy:
        return self.policy


async def _repositories(request: web.Request) -> list[str]:
    """Repositories with verdicts that the reader may read (the first ``LISTED``)."""
    patterns = rights(request).reads.patterns
    query = select(Verdict.repository).distinct().order_by(Verdict.repository)
    if not globs.everything(patterns):
        query = query.where(globs.prefilter(Verdict.repository, patterns))
    async with services(request).db() as session:
        names = (await session.scalars(query.limit(LISTED * 5))).all()
    return [n for n in names if globs.everything(patterns) or globs.matches(n, patterns)][:LISTED]


def _image(request: web.Request) -> tuple[str, str] | None:
    value = query_str(request, "image", 400)
    if value is None:
        return None
    repository, _, digest = value.rpartition("@")
    try:
        check_name(repository)
        check_digest(digest)
    except OCIError as exc:
        raise AdminError(
            AdminCode.BAD_REQUEST, "image: REPOSITORY@DIGEST, for example team/app@sha256:..."
        ) from exc
    require(request, repository)
    record = info(request)
    record.repository, record.digest = repository, digest
    return repository, digest


async def _dry_run(request: web.Request, repository: str, digest: str) -> dict[str, Any]:
    svc = services(request)
    async with svc.db() as session:
        verdict = await verdicts.get(session, repository, digest)
        findings = await verdicts.findings(session, repository, digest) if verdict else []
    if verdict is None:
        raise AdminError(
            AdminCode.NOT_FOUND, f"the gatekeeper has no verdict for {repository}@{digest}"
        )
    current = svc.policies.match(repository, verdict.origin)
    threshold = choice(request, "threshold", ("", *THRESHOLDS))
    finding = query_str(request, "waive")
    changes: dict[str, Any] = {}
    if threshold:
        changes["severity_threshold"] = threshold
    if finding:
        author = rights(request).principal
        extra = Waiver(finding=finding, repositories=[repository], reason="dry run", author=author)
        changes["waivers"] = [*current.waivers, extra]
    try:
        outcomes = rebuild_outcomes(verdict, findings)
    except StoredDataError as exc:
        raise AdminError(
            AdminCode.CONFLICT, f"the stored verdict cannot be decided again: {exc}"
        ) from exc
    now_state, _, now_reasons = would_be(verdict, Fixed(current), outcomes)
    changed = current.model_copy(update=changes)
    then_state, _, then_reasons = would_be(verdict, Fixed(changed), outcomes)
    return {
        "verdict": verdict,
        "threshold": threshold,
        "waive": finding or "",
        "current_policy": current,
        "now_state": str(now_state),
        "now_reasons": now_reasons,
        "then_state": str(then_state),
        "then_reasons": then_reasons,
        "pending": verdict.state == "pending" or not verdict.outcomes,
    }


async def page_view(request: web.Request) -> web.StreamResponse:
    """GET /ui/policies?repository=&image=&threshold=&waive="""
    svc = services(request)
    repository = query_repository(request)
    if repository is not None:
        require(request, repository)
    image = _image(request)
    effective = svc.policies.match(repository) if repository is not None else None
    dry = await _dry_run(request, *image) if image is not None else None
    listed = await _repositories(request)
    return page(
        request,
        "policies.html",
        {
            "repository": repository or "",
            "effective": effective,
            "per_repository": [(name, svc.policies.match(name)) for name in listed],
            "configured": svc.settings.policies if rights(request).reads.everything else [],
            "image": f"{image[0]}@{image[1]}" if image else "",
            "image_repository": image[0] if image else "",
            "image_digest": image[1] if image else "",
            "dry": dry,
            "thresholds": THRESHOLDS,
            "acts_on_image": image is not None and rights(request).administers.covers(image[0]),
            "administers": not rights(request).administers.empty,
            "done": request.query.get("done") == "vex",
        },
    )
