"""``/policy/test``: what would change if these policies were applied, changing nothing.

Each stored verdict is decided again by ``verifiers.policy.decide`` from the outcomes and findings
stored with it, so the dry-run answers for the same inputs the real decision had, without
fetching or scanning anything. The answer only reads; no verdict, event or job is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from config.policy import Policy, match_policy
from proxy.admin.bodies import PolicyTestBody
from proxy.admin.common import ok, read_body, services, verdict_pages
from storage import verdicts
from storage.verdicts import FindingRecord, VerdictView
from verifiers.base import Finding, Severity
from verifiers.pipeline import Outcome
from verifiers.policy import decide

log = logging.getLogger("gatekeeper.admin")


class StoredDataError(ValueError):
    """A stored verdict's outcomes or findings cannot be read back (written by an older
    version, or edited by hand); that verdict is skipped, not guessed at."""


def rebuild_outcomes(verdict: VerdictView, findings: Sequence[FindingRecord]) -> list[Outcome]:
    """The pipeline's outcomes as they were when ``verdict`` was decided."""
    by_verifier: dict[str, list[Finding]] = {}
    for f in findings:
        try:
            severity = Severity.parse(f.severity)
        except ValueError as exc:
            raise StoredDataError(str(exc)) from exc
        by_verifier.setdefault(f.verifier, []).append(
            Finding(f.verifier, f.rule_id, severity, f.title, f.location, f.evidence)
        )
    outcomes = []
    for stored in verdict.outcomes:
        try:
            name, status = str(stored["verifier"]), stored["status"]
        except (KeyError, TypeError) as exc:
            raise StoredDataError(f"outcome without verifier or status: {stored!r}") from exc
        if status not in ("ok", "skipped", "error"):
            raise StoredDataError(f"unknown outcome status {status!r}")
        outcomes.append(
            Outcome(
                verifier=name,
                version=str(stored.get("version", "")),
                status=status,
                findings=tuple(by_verifier.get(name, ())),
                detail=str(stored.get("detail") or ""),
                duration_ms=float(stored.get("duration_ms") or 0.0),
            )
        )
    return outcomes


def would_be(
    verdict: VerdictView, policies: list[Policy], outcomes: list[Outcome]
) -> tuple[str, Policy, tuple[str, ...]]:
    """The state a new decision would leave: an unexpired release survives a failing decision,
    as it does when the verification service stores one."""
    policy = match_policy(policies, verdict.repository)
    decision = decide(policy, verdict.repository, outcomes)
    current = verdict.effective_state()
    state: str = decision.state
    if current == "released" and decision.state == "quarantined":
        state = "released"
    return state, policy, decision.reasons


async def test_policies(request: web.Request) -> web.StreamResponse:
    """POST /policy/test : the verdicts these policies would change, and how."""
    body = await read_body(request, PolicyTestBody)
    svc = services(request)
    policies = body.policies if body.policies is not None else svc.settings.policies
    changes: list[dict[str, Any]] = []
    examined = pending = unreadable = 0
    async for batch in verdict_pages(svc, None):
        keys = [(v.repository, v.digest) for v in batch]
        async with svc.db() as session:
            findings = await verdicts.findings_of(session, keys)
        for verdict in batch:
            if verdict.state == "pending" or not verdict.outcomes:
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
                    {
                        "repository": verdict.repository,
                        "digest": verdict.digest,
                        "current": current,
                        "would_be": state,
                        "policy": policy.name,
                        "reasons": list(reasons),
                    }
                )
    return ok(
        {
            "source": "request" if body.policies is not None else "settings",
            "examined": examined,
            "skipped_pending": pending,
            "skipped_unreadable": unreadable,
            "changes": changes,
        }
    )
