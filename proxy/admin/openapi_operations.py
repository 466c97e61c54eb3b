"""The OpenAPI document's words on each admin route, keyed by the route's name
(``proxy.admin.routes``): summary, query parameters, request and response models, status codes.

Only words and references live here: the schemas are generated from the models
(``proxy.admin.bodies`` in, ``proxy.admin.models`` out), and the paths, methods and what each
route needs of its caller come from the route table, so neither can drift from what is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from proxy.admin import bodies
from proxy.admin import models as out
from proxy.admin import models_policy as pol
from proxy.admin.common import MAX_LIMIT, STATES

Schema = dict[str, Any]


@dataclass(frozen=True)
class Operation:
    """One route as documented."""

    id: str
    """The ``operationId``."""
    summary: str
    returns: tuple[type[BaseModel], ...]
    """The 2xx body's model; several: one of them. Empty: any JSON object."""
    says: str
    """The description of the 2xx answer."""
    status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    errors: tuple[str, ...] = ()
    """Responses beyond 401 and 403 (``components.responses`` names)."""
    query: tuple[Schema, ...] = ()
    media_type: str = "application/json"


def query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


TEXT: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time"}
FLAG: Schema = {"type": "boolean", "default": False}
LIMIT = query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
    "At most this many.",
)
REPOSITORY = query("repository", TEXT, "Only this repository.")
CHANGE = ("BadRequest", "Conflict", "Unprocessable")
WITHDRAW = ("BadRequest", "NotFound", "Conflict", "Unprocessable")

PATH_PARAMETERS: dict[str, Schema] = {
    "reference": {
        "description": "`REPOSITORY@DIGEST`; the repository may contain `/` (sent unescaped).",
        "schema": {"type": "string", "examples": ["team/app@sha256:" + "0" * 64]},
    },
    "name": {
        "description": "Repository; may contain `/` (sent unescaped).",
        "schema": {"type": "string", "examples": ["team/app"]},
    },
    "digest": {"schema": {"type": "string", "examples": ["sha256:" + "0" * 64]}},
    "id": {"schema": {"type": "integer", "minimum": 1}},
}

_IMAGES: dict[str, Operation] = {
    "admin.images": Operation(
        "listImages",
        "List verdicts, most recently changed first, of the repositories the caller may read.",
        (out.Images,),
        "The verdicts.",
        errors=("BadRequest",),
        query=(
            query(
                "state", {"type": "string", "enum": list(STATES)}, "Only verdicts in this state."
            ),
            REPOSITORY,
            LIMIT,
        ),
    ),
    "admin.image": Operation(
        "showImage",
        "One verdict with its findings, verifier outcomes, history and policy.",
        (out.ImageDetail,),
        "The verdict.",
        errors=("BadRequest", "NotFound"),
    ),
    "admin.release": Operation(
        "releaseImage",
        "Let a quarantined or pending image be pulled, optionally until a time; when it expires "
        "the image is quarantined again.",
        (out.Verdict,),
        "Released.",
        body=bodies.ReleaseBody,
        errors=CHANGE,
    ),
    "admin.requarantine": Operation(
        "requarantineImage",
        "Withdraw a release (or a pass): the image cannot be pulled until an admin releases it; "
        "passing re-scans do not lift an admin's hold.",
        (out.Verdict,),
        "Quarantined.",
        body=bodies.ReasonBody,
        errors=CHANGE,
    ),
    "admin.rescan": Operation(
        "rescanImage",
        "Queue a new verification; the current verdict stays in force until the new one lands "
        "(last known good).",
        (out.RescanQueued,),
        "Queued.",
        status=202,
        body=bodies.RescanBody,
        body_required=False,
        errors=CHANGE,
    ),
    "admin.rescan-all": Operation(
        "rescanAll",
        "Queue a verification of one repository's images (an admin of it) or of every known "
        "image (a global admin).",
        (out.RescanAllQueued,),
        "How many were queued.",
        status=202,
        body=bodies.RescanAllBody,
        body_required=False,
        errors=("BadRequest", "Unprocessable"),
    ),
    "admin.prefetch": Operation(
        "prefetch",
        "Fetch images through the registry (a registry in proxy mode fetches them from its "
        "remote) and queue their verification, before anyone pulls them. The verdicts follow: "
        "poll `/images/{repository}@{digest}`.",
        (out.PrefetchResult,),
        "What became of each image.",
        status=202,
        body=bodies.PrefetchBody,
        errors=("BadRequest", "Unprocessable"),
    ),
}

_POLICIES: dict[str, Operation] = {
    "admin.policy-test": Operation(
        "testPolicies",
        "Dry-run: which verdicts would change under these policies, decided from stored "
        "results. Changes nothing.",
        (pol.PolicyTestResult,),
        "What would change.",
        body=bodies.PolicyTestBody,
        body_required=False,
        errors=("BadRequest", "Unprocessable"),
    ),
    "admin.policy-reevaluate": Operation(
        "reevaluatePolicies",
        "Apply the configured policies now: every verdict decided under another version of the "
        "policy that matches its repository is decided again from its stored findings (no layer "
        "is read). Admin releases stay released; changes fire webhooks. The gatekeeper also "
        "does this at start-up.",
        (pol.PolicyReevaluateResult,),
        "What changed.",
        body=bodies.PolicyReevaluateBody,
        body_required=False,
        errors=("BadRequest", "Unprocessable"),
    ),
    "admin.policies": Operation(
        "effectivePolicies",
        "The policy in force for images of one repository from one origin (the settings file's, "
        "with the stored waivers that apply there) and its version; without `repository`, the "
        "settings file's policies (a reader of every repository).",
        (pol.EffectivePolicy, pol.PolicyList),
        "The policy (with `repository`) or the policies.",
        errors=("BadRequest",),
        query=(
            query("repository", TEXT, "The repository."),
            query(
                "origin",
                TEXT,
                "`local` (pushed here) or a remote's name; default: the origin of the "
                "repository's images that were not pushed here.",
            ),
        ),
    ),
    "admin.waivers": Operation(
        "listWaivers",
        "Waivers, stored and from the settings file: those that concern `repository`, or those "
        "within what the caller may read.",
        (pol.Waivers,),
        "The waivers.",
        errors=("BadRequest",),
        query=(
            query("repository", TEXT, "Only the waivers that apply to it."),
            query("all", FLAG, "Also expired and withdrawn ones."),
        ),
    ),
    "admin.waive": Operation(
        "waive",
        "Accept a finding within a repository pattern: stored, applied with the settings file's "
        "waivers, and the verdicts it touches decided again from stored findings before the "
        "answer (webhooks fire for each change). An admin's hold is never lifted by a waiver.",
        (pol.WaiverChange,),
        "Made, and applied.",
        status=201,
        body=bodies.WaiverBody,
        errors=("BadRequest", "Unprocessable"),
    ),
    "admin.waiver-withdraw": Operation(
        "withdrawWaiver",
        "Withdraw a stored waiver (kept, marked withdrawn); what it let through is decided again "
        "and quarantined where its findings block.",
        (pol.WaiverChange,),
        "Withdrawn, and applied.",
        body=bodies.ReasonBody,
        errors=WITHDRAW,
    ),
    "admin.vex": Operation(
        "listVex",
        "VEX documents in force within what the caller may read: stored (added over the API, or "
        "signed referrers of images) and the settings file's.",
        (pol.VexList,),
        "The documents.",
        errors=("BadRequest",),
        query=(query("all", FLAG, "Also withdrawn ones."),),
    ),
    "admin.vex-add": Operation(
        "addVex",
        "Accept an OpenVEX document within a repository pattern: its `not_affected` and `fixed` "
        "statements waive the findings they name for the products they name, and the verdicts "
        "they touch are decided again from stored findings before the answer (webhooks fire for "
        "each change).",
        (pol.VexChange,),
        "Stored, and applied.",
        status=201,
        body=bodies.VexBody,
        errors=("BadRequest", "Unprocessable"),
    ),
    "admin.vex-withdraw": Operation(
        "withdrawVex",
        "Withdraw a stored VEX document (kept, marked withdrawn); what it let through is decided "
        "again and quarantined where its findings block.",
        (pol.VexChange,),
        "Withdrawn, and applied.",
        body=bodies.ReasonBody,
        errors=WITHDRAW,
    ),
}

_READING: dict[str, Operation] = {
    "admin.sbom": Operation(
        "imageSbom",
        "The image's stored package inventory as a CycloneDX JSON SBOM (the document "
        "`gatekeeper sbom` prints).",
        (),
        "CycloneDX 1.x JSON.",
        errors=("BadRequest", "NotFound"),
        media_type="application/vnd.cyclonedx+json",
    ),
    "admin.audit": Operation(
        "queryAudit",
        "Access-log rows, oldest first (the newest `limit` of them); a reader of some "
        "repositories sees only the rows about them.",
        (out.AccessRecords,),
        "The rows.",
        errors=("BadRequest",),
        query=(
            REPOSITORY,
            query("identity", TEXT, "Only this identity (e.g. `admin-token:alice`)."),
            query("action", TEXT, "Only this action (e.g. `manifest.pull`)."),
            query("status", {"type": "integer", "minimum": 100, "maximum": 599}, "HTTP status."),
            query("digest", TEXT, "Only this digest."),
            query("since", TIME, "Inclusive; with a zone offset."),
            query("until", TIME, "Exclusive; with a zone offset."),
            LIMIT,
        ),
    ),
    "admin.openapi": Operation("openapi", "This document.", (), "OpenAPI 3.1."),
}

OPERATIONS: dict[str, Operation] = {**_IMAGES, **_POLICIES, **_READING}
