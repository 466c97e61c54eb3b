"""``/ui/images/{repository}@{digest}``: one image, everything a reviewer needs to decide on it.

The verdict and its history; findings grouped by verifier and severity with their rule ids,
the layer that carries each (a finding's ``blob``, named by its position in the manifest) and
fix versions; the ``signatures`` verifier's outcome and the signature artifacts attached; the
referrers; the latest pulls from the access log; the SBOM when one is stored; and, for an
admin of the repository, the actions. Evidence is shown as the verifiers stored it, which is
never the secret itself (``verifiers.content.redact``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from proxy.admin import actions
from proxy.admin.access import rights
from proxy.admin.common import image_ref, services
from proxy.admin.errors import AdminCode, AdminError
from proxy.admin.sbom import MEDIA_TYPE
from proxy.ui.render import page
from storage import image_facts, verdicts
from storage.image_facts import Blob, ImageFacts
from storage.inventory import DbInventoryStore
from storage.verdicts import FindingRecord
from verifiers.base import Severity

SIGNATURE_VERIFIER = "signatures"
SIGNATURE_TYPES = ("signature", "sigstore", "cosign", "notary")
"""Words in an artifact type that make a referrer a signature (cosign, Sigstore, Notation)."""


@dataclass(frozen=True)
class Group:
    """Findings of one verifier at one severity."""

    verifier: str
    severity: str
    findings: list[tuple[FindingRecord, str]]
    """Each finding with the name of the layer that carries it."""


def _rank(severity: str) -> int:
    try:
        return int(Severity.parse(severity))
    except ValueError:
        return int(Severity.CRITICAL) + 1  # unreadable counts as worst, as decisions do


def layer_names(blobs: list[Blob]) -> dict[str, str]:
    """``sha256:...`` -> ``layer 2`` / ``config``, by the manifest's own order."""
    names: dict[str, str] = {}
    number = 0
    for blob in sorted(blobs, key=lambda b: b.position):
        if blob.kind == "config":
            names.setdefault(blob.digest, "config")
        elif blob.kind == "layer":
            number += 1
            names.setdefault(blob.digest, f"layer {number}")
    return names


def grouped(findings: list[FindingRecord], names: dict[str, str]) -> list[Group]:
    """By verifier (alphabetical), then severity (worst first)."""
    groups: dict[tuple[str, str], list[tuple[FindingRecord, str]]] = defaultdict(list)
    for finding in findings:
        if finding.blob is None:
            carrier = "the image" if finding.origin is None else f"inherited from {finding.origin}"
        else:
            carrier = names.get(finding.blob, "a blob of another image")
        groups[(finding.verifier, finding.severity)].append((finding, carrier))
    ordered = sorted(groups, key=lambda key: (key[0], -_rank(key[1])))
    return [Group(v, s, groups[(v, s)]) for v, s in ordered]


def signature_artifacts(facts: ImageFacts) -> list[image_facts.Referrer]:
    return [
        r
        for r in facts.referrers
        if r.via == "tag" or any(word in (r.artifact_type or "") for word in SIGNATURE_TYPES)
    ]


async def page_view(request: web.Request) -> web.StreamResponse:
    """GET /ui/images/{repository}@{digest}"""
    repository, digest = image_ref(request)
    svc = services(request)
    async with svc.db() as session:
        verdict = await verdicts.get(session, repository, digest)
        if verdict is None:
            raise AdminError(AdminCode.NOT_FOUND, actions.no_verdict(repository, digest))
        findings = await verdicts.findings(session, repository, digest)
        history = await verdicts.history(session, repository, digest)
        facts = await image_facts.image_facts(session, repository, digest)
        pulls = await image_facts.pulls(session, repository, digest)
    names = layer_names(facts.blobs)
    outcomes: list[dict[str, Any]] = list(verdict.outcomes)
    policy = svc.policies.match(repository)
    return page(
        request,
        "image.html",
        {
            "repository": repository,
            "digest": digest,
            "verdict": verdict,
            "state": verdict.effective_state().value,
            "groups": grouped(findings, names),
            "finding_count": len(findings),
            "history": list(reversed(history)),
            "facts": facts,
            "layers": [
                (names.get(b.digest, b.kind), b)
                for b in sorted(facts.blobs, key=lambda b: b.position)
                if b.kind in ("config", "layer")
            ],
            "outcomes": outcomes,
            "signature_outcome": next(
                (o for o in outcomes if o.get("verifier") == SIGNATURE_VERIFIER), None
            ),
            "signature_findings": [f for f in findings if f.verifier == SIGNATURE_VERIFIER],
            "signature_artifacts": signature_artifacts(facts),
            "pulls": pulls,
            "policy": policy,
            "acts_here": rights(request).administers.covers(repository),
            "done": request.query.get("done", ""),
        },
    )


async def sbom(request: web.Request) -> web.StreamResponse:
    """GET /ui/sbom/{repository}@{digest} : the stored inventory as CycloneDX JSON, the same
    document as ``gatekeeper sbom`` and the admin API, as a download."""
    repository, digest = image_ref(request)
    inventory = await DbInventoryStore(services(request).db).load(repository, digest)
    if inventory is None:
        raise AdminError(
            AdminCode.NOT_FOUND,
            f"{repository}@{digest} has no inventory: it was not verified with the inventory "
            "verifier enabled",
        )
    from verifiers.scan.cyclonedx import to_cyclonedx  # a rare request: see proxy/admin/sbom.py

    name = f"{repository.replace('/', '_')}_{digest.replace(':', '-')[:19]}.cdx.json"
    return web.Response(
        body=to_cyclonedx(repository, digest, inventory).encode(),
        content_type=MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
