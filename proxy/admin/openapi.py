"""The admin API's OpenAPI 3.1 document, written by hand and served at ``/openapi.json``.

Written by hand so it reads as documentation rather than as a dump of handler signatures; tests
hold it to the code (its paths and methods equal the route table, its request bodies equal the
body models). Only the policy schema is generated, from the very model settings are validated
with, because a hand copy of it would drift the first time a policy option is added.
"""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from config.policy import Policy
from proxy.admin.common import ok
from proxy.admin.openapi_parts import (
    ACTOR,
    LIMIT,
    REASON,
    REFERENCE,
    STATE,
    STRING_OR_NULL,
    TEXT,
    TIME,
    TIME_OR_NULL,
    P,
    Schema,
    _errors,
    _json,
    _nullable,
    _query,
    _ref,
)
from proxy.admin.openapi_prefetch import prefetch_paths, prefetch_schemas
from proxy.admin.openapi_vex import vex_paths, vex_schemas
from proxy.admin.openapi_waivers import waiver_paths, waiver_schemas
from proxy.admin.releases import MAX_RELEASE, MAX_RELEASE_SECONDS


def _verdict_properties() -> dict[str, Schema]:
    return {
        "repository": TEXT,
        "digest": TEXT,
        "state": STATE,
        "effective_state": {
            **STATE,
            "description": "`quarantined` for a release past its expiry the sweeper has not "
            "rewritten yet; what the gate acts on.",
        },
        "pullable": {"type": "boolean"},
        "reasons": {"type": "array", "items": TEXT},
        "policy": {**STRING_OR_NULL, "description": "Policy that decided the verdict."},
        "policy_version": STRING_OR_NULL,
        "data_versions": {"type": "object", "additionalProperties": True},
        "released_by": STRING_OR_NULL,
        "release_reason": STRING_OR_NULL,
        "release_expires": TIME_OR_NULL,
        "decided_at": TIME_OR_NULL,
        "updated_at": TIME,
        "trigger": {
            **STRING_OR_NULL,
            "description": "What made the latest decision: null for a verification, "
            "`advisory-import (data version N)` or `policy-change (policy P version V)` for a "
            "re-evaluation from stored data.",
        },
        "origin": {
            **TEXT,
            "description": "Where the image comes from, which chooses its policy: `local` "
            "(pushed here, or in a repository no remote serves) or the name of the remote "
            "the registry fetched it from.",
        },
    }


def _schemas() -> dict[str, Schema]:
    return {
        **_error_and_verdict_schemas(),
        **_image_detail_schemas(),
        **_action_schemas(),
        **_policy_test_schemas(),
        **_result_and_log_schemas(),
    }


def _error_and_verdict_schemas() -> dict[str, Schema]:
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {
                            "type": "string",
                            "examples": ["UNAUTHORIZED", "DIGEST_INVALID", "CONFLICT"],
                        },
                        "message": TEXT,
                        "details": {
                            "type": "array",
                            "description": "One entry per invalid field (422 only).",
                            "items": {
                                "type": "object",
                                "properties": {"field": TEXT, "message": TEXT},
                            },
                        },
                    },
                }
            },
        },
        "Verdict": {
            "type": "object",
            "required": list(_verdict_properties()),
            "properties": _verdict_properties(),
        },
        "Finding": {
            "type": "object",
            "properties": {
                "verifier": TEXT,
                "rule_id": TEXT,
                "severity": {
                    "type": "string",
                    "enum": ["info", "low", "medium", "high", "critical"],
                },
                "title": TEXT,
                "location": TEXT,
                "evidence": TEXT,
                "fix": {
                    **STRING_OR_NULL,
                    "description": "For a package finding: the first fixed version, empty "
                    "when no fix is known; null when not applicable.",
                },
            },
        },
    }


def _image_detail_schemas() -> dict[str, Schema]:
    return {
        "Outcome": {
            "type": "object",
            "properties": {
                "verifier": TEXT,
                "version": TEXT,
                "status": {"type": "string", "enum": ["ok", "skipped", "error"]},
                "detail": TEXT,
                "findings": {"type": "integer", "description": "How many findings it reported."},
                "duration_ms": {"type": "number"},
            },
        },
        "HistoryEvent": {
            "type": "object",
            "properties": {
                "time": TIME,
                "event": {
                    "type": "string",
                    "examples": ["pending", "quarantined", "released", "release-expired"],
                },
                "old_state": STRING_OR_NULL,
                "new_state": STATE,
                "actor": TEXT,
                "reason": STRING_OR_NULL,
            },
        },
        "ImageDetail": {
            "allOf": [
                _ref("Verdict"),
                {
                    "type": "object",
                    "required": ["findings", "outcomes", "history", "applicable_policy"],
                    "properties": {
                        "findings": {"type": "array", "items": _ref("Finding")},
                        "outcomes": {"type": "array", "items": _ref("Outcome")},
                        "history": {
                            "type": "array",
                            "description": "Oldest first.",
                            "items": _ref("HistoryEvent"),
                        },
                        "applicable_policy": {
                            **_ref("Policy"),
                            "description": "The policy that matches the repository now.",
                        },
                    },
                },
            ]
        },
    }


def _action_schemas() -> dict[str, Schema]:
    return {
        "ReasonRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["reason"],
            "properties": {"reason": REASON, "actor": ACTOR},
        },
        "ReleaseRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["reason"],
            "description": "At most one of `expires_in_seconds` and `expires_at`; neither "
            "means the release lasts until re-quarantined or a rescan passes.",
            "properties": {
                "reason": REASON,
                "actor": ACTOR,
                "expires_in_seconds": _nullable(
                    {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_RELEASE_SECONDS}
                ),
                "expires_at": {
                    **TIME_OR_NULL,
                    "description": "In the future, with a zone offset (converted to UTC), "
                    f"at most {MAX_RELEASE.days} days from now like `expires_in_seconds`.",
                },
            },
        },
        "RescanRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"reason": _nullable(REASON), "actor": ACTOR},
        },
        "RescanAllRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "repository": {
                    **STRING_OR_NULL,
                    "description": "Only this repository's images; omitted: every image.",
                },
                "reason": _nullable(REASON),
                "actor": ACTOR,
            },
        },
        "Queued": {
            "type": "object",
            "required": ["queued"],
            "properties": {
                "queued": {"type": "integer"},
                "images": {"type": "array", "items": {"type": "object"}},
                "repository": STRING_OR_NULL,
            },
        },
    }


def _policy_test_schemas() -> dict[str, Schema]:
    return {
        "PolicyTestRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "policies": _nullable(
                    {
                        "type": "array",
                        "items": _ref("Policy"),
                        "description": "Omitted: the configured policies.",
                    }
                )
            },
        },
        "PolicyChange": {
            "type": "object",
            "properties": {
                "repository": TEXT,
                "digest": TEXT,
                "current": STATE,
                "would_be": STATE,
                "policy": TEXT,
                "reasons": {"type": "array", "items": TEXT},
            },
        },
        "PolicyTestResult": {
            "type": "object",
            "properties": {
                "source": {"type": "string", "enum": ["request", "settings"]},
                "examined": {"type": "integer"},
                "skipped_pending": {"type": "integer"},
                "skipped_unreadable": {"type": "integer"},
                "changes": {"type": "array", "items": _ref("PolicyChange")},
            },
        },
        "PolicyReevaluateRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "repository": {
                    **STRING_OR_NULL,
                    "description": "Only this repository's verdicts; omitted: every verdict.",
                },
                "reason": _nullable(REASON),
                "actor": ACTOR,
            },
        },
    }


def _result_and_log_schemas() -> dict[str, Schema]:
    return {
        "PolicyReevaluateResult": {
            "type": "object",
            "properties": {
                "repository": STRING_OR_NULL,
                "reevaluated": {
                    "type": "integer",
                    "description": "Verdicts decided under another policy version, decided again.",
                },
                "changed": {"type": "integer"},
                "quarantined": {"type": "integer", "description": "Newly quarantined."},
                "notified": {
                    "type": "integer",
                    "description": "Still pullable with new blocking findings "
                    "(`image.new-findings`).",
                },
                "skipped_unreadable": {"type": "integer"},
                "queued": {
                    "type": "integer",
                    "description": "Full verifications queued: the policy now requires a "
                    "verifier with no stored result (decided as failed meanwhile).",
                },
                "seconds": {"type": "number"},
            },
        },
        "AccessRecord": {
            "type": "object",
            "properties": {
                "time": TIME,
                "request_id": TEXT,
                "client_addr": STRING_OR_NULL,
                "identity": TEXT,
                "method": TEXT,
                "path": TEXT,
                "action": {"type": "string", "examples": ["manifest.pull", "admin.release"]},
                "repository": STRING_OR_NULL,
                "reference": STRING_OR_NULL,
                "digest": STRING_OR_NULL,
                "status": {"type": "integer"},
                "bytes_in": {"type": "integer"},
                "bytes_out": {"type": "integer"},
                "duration_ms": {"type": "number"},
                "upstream_status": _nullable({"type": "integer"}),
                "decision": STRING_OR_NULL,
                "reason": STRING_OR_NULL,
                "error_code": STRING_OR_NULL,
            },
        },
    }


def _policy_schemas() -> dict[str, Schema]:
    schema = Policy.model_json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, Schema] = schema.pop("$defs", {})
    return {**defs, "Policy": schema}


_IMAGE = P + "/images/{reference}"


def _image_paths() -> dict[str, Any]:
    return {**_image_list_and_release_paths(), **_image_action_paths()}


def _image_list_and_release_paths() -> dict[str, Any]:
    return {
        P + "/images": {
            "get": {
                "operationId": "listImages",
                "summary": "List verdicts, most recently changed first, of the repositories the "
                "caller may read.",
                "parameters": [
                    _query("state", STATE, "Only verdicts in this state."),
                    _query("repository", TEXT, "Only this repository."),
                    LIMIT,
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"images": {"type": "array", "items": _ref("Verdict")}},
                        },
                        "The verdicts.",
                    ),
                    **_errors("BadRequest"),
                },
            }
        },
        _IMAGE: {
            "parameters": [REFERENCE],
            "get": {
                "operationId": "showImage",
                "summary": "One verdict with its findings, verifier outcomes, history and policy.",
                "responses": {
                    "200": _json(_ref("ImageDetail"), "The verdict."),
                    **_errors("BadRequest", "NotFound"),
                },
            },
        },
        _IMAGE + "/release": {
            "parameters": [REFERENCE],
            "post": {
                "operationId": "releaseImage",
                "summary": "Let a quarantined or pending image be pulled, optionally until a "
                "time; when it expires the image is quarantined again.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ReleaseRequest")}},
                },
                "responses": {
                    "200": _json(_ref("Verdict"), "Released."),
                    **_errors("BadRequest", "Conflict", "Unprocessable"),
                },
            },
        },
    }


def _image_action_paths() -> dict[str, Any]:
    return {
        _IMAGE + "/requarantine": {
            "parameters": [REFERENCE],
            "post": {
                "operationId": "requarantineImage",
                "summary": "Withdraw a release (or a pass): the image cannot be pulled until an "
                "admin releases it; passing re-scans do not lift an admin's hold.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ReasonRequest")}},
                },
                "responses": {
                    "200": _json(_ref("Verdict"), "Quarantined."),
                    **_errors("BadRequest", "Conflict", "Unprocessable"),
                },
            },
        },
        _IMAGE + "/rescan": {
            "parameters": [REFERENCE],
            "post": {
                "operationId": "rescanImage",
                "summary": "Queue a new verification; the current verdict stays in force until "
                "the new one lands (last known good).",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("RescanRequest")}},
                },
                "responses": {
                    "202": _json(_ref("Queued"), "Queued."),
                    **_errors("BadRequest", "Conflict", "Unprocessable"),
                },
            },
        },
    }


def _other_paths() -> dict[str, Any]:
    return {**_policy_action_paths(), **_sbom_paths(), **_log_and_document_paths()}


def _policy_action_paths() -> dict[str, Any]:
    return {
        P + "/rescan": {
            "post": {
                "operationId": "rescanAll",
                "summary": "Queue a verification of one repository's images (an admin of it) or "
                "of every known image (a global admin).",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("RescanAllRequest")}},
                },
                "responses": {
                    "202": _json(_ref("Queued"), "How many were queued."),
                    **_errors("BadRequest", "Unprocessable"),
                },
            }
        },
        P + "/policy/test": {
            "post": {
                "operationId": "testPolicies",
                "summary": "Dry-run: which verdicts would change under these policies, decided "
                "from stored results. Changes nothing.",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("PolicyTestRequest")}},
                },
                "responses": {
                    "200": _json(_ref("PolicyTestResult"), "What would change."),
                    **_errors("BadRequest", "Unprocessable"),
                },
            }
        },
        P + "/policy/reevaluate": {
            "post": {
                "operationId": "reevaluatePolicies",
                "summary": "Apply the configured policies now: every verdict decided under "
                "another version of the policy that matches its repository is decided again "
                "from its stored findings (no layer is read). Admin releases stay released; "
                "changes fire webhooks. The gatekeeper also does this at start-up.",
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("PolicyReevaluateRequest")}},
                },
                "responses": {
                    "200": _json(_ref("PolicyReevaluateResult"), "What changed."),
                    **_errors("BadRequest", "Unprocessable"),
                },
            }
        },
    }


def _sbom_paths() -> dict[str, Any]:
    return {
        P + "/repositories/{name}/manifests/{digest}/sbom": {
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "Repository; may contain `/` (sent unescaped).",
                    "schema": {"type": "string", "examples": ["team/app"]},
                },
                {
                    "name": "digest",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "examples": ["sha256:" + "0" * 64]},
                },
            ],
            "get": {
                "operationId": "imageSbom",
                "summary": "The image's stored package inventory as a CycloneDX JSON SBOM "
                "(the document `gatekeeper sbom` prints).",
                "responses": {
                    "200": {
                        "description": "CycloneDX 1.x JSON.",
                        "content": {
                            "application/vnd.cyclonedx+json": {"schema": {"type": "object"}}
                        },
                    },
                    **_errors("BadRequest", "NotFound"),
                },
            },
        },
    }


def _log_and_document_paths() -> dict[str, Any]:
    return {
        P + "/audit": {
            "get": {
                "operationId": "queryAudit",
                "summary": "Access-log rows, oldest first (the newest `limit` of them); a reader "
                "of some repositories sees only the rows about them.",
                "parameters": [
                    _query("repository", TEXT, "Only this repository."),
                    _query("identity", TEXT, "Only this identity (e.g. `admin-token:alice`)."),
                    _query("action", TEXT, "Only this action (e.g. `manifest.pull`)."),
                    _query(
                        "status",
                        {"type": "integer", "minimum": 100, "maximum": 599},
                        "HTTP status.",
                    ),
                    _query("digest", TEXT, "Only this digest."),
                    _query("since", TIME, "Inclusive; with a zone offset."),
                    _query("until", TIME, "Exclusive; with a zone offset."),
                    LIMIT,
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "records": {"type": "array", "items": _ref("AccessRecord")}
                            },
                        },
                        "The rows.",
                    ),
                    **_errors("BadRequest"),
                },
            }
        },
        P + "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {
                    "200": {"description": "OpenAPI 3.1.", "content": {"application/json": {}}},
                    **_errors(),
                },
            }
        },
    }


def _error_response(description: str) -> Schema:
    return _json(_ref("Error"), description)


def _security_schemes() -> dict[str, Schema]:
    return {
        "adminToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "The break-glass `admin_token` from settings (a global "
            "admin), or a token from the gatekeeper's `/auth/token` endpoint (the "
            "identity's roles apply). With neither a token configured nor client "
            "authentication on, the API is disabled and every request is 401.",
        },
        "login": {
            "type": "http",
            "scheme": "basic",
            "description": "A user's or robot's credentials. `admin` on a repository "
            "pattern acts there (on `*`: settings-wide actions too); `auditor` and "
            "`quarantine-reader` read there; anything else is 403.",
        },
    }


@functools.cache
def build() -> dict[str, Any]:
    """The whole document (built once; it only depends on code)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "registry-gatekeeper admin API",
            "version": "1",
            "description": "List and inspect verdicts, release and re-quarantine images, "
            "rescan, prefetch, waive findings, dry-run and re-apply policies, export SBOMs and "
            "read the access log. "
            "Every action is written to the "
            "access log with its actor and reason. An `admin` grant on a repository pattern "
            "acts on the repositories it matches; reading needs `admin`, `auditor` or "
            "`quarantine-reader` there; policy dry-runs and re-evaluation, a rescan of every "
            "image and this document need the global admin (a grant on `*`, or the admin "
            "token). Outside its scope a caller gets 403 naming what it may administer.",
        },
        "servers": [{"url": "/"}],
        "security": [{"adminToken": []}, {"login": []}],
        "paths": {
            **_image_paths(),
            **waiver_paths(),
            **vex_paths(),
            **prefetch_paths(),
            **_other_paths(),
        },
        "components": {
            "securitySchemes": _security_schemes(),
            "responses": {
                "BadRequest": _error_response("Malformed request: JSON, path or query."),
                "Unauthorized": _error_response(
                    "No token, a wrong token, or the admin API is disabled."
                ),
                "Forbidden": _error_response(
                    "The identity may not do this here: the message names what it may "
                    "administer and read."
                ),
                "NotFound": _error_response(
                    "No such image verdict (or inventory, for an SBOM; or stored waiver)."
                ),
                "Conflict": _error_response("The image is not in a state the action applies to."),
                "Unprocessable": _error_response("A body field is invalid; `details` names each."),
            },
            "schemas": {
                **_schemas(),
                **waiver_schemas(),
                **vex_schemas(),
                **prefetch_schemas(),
                **_policy_schemas(),
            },
        },
    }


async def document(request: web.Request) -> web.StreamResponse:
    """GET /openapi.json : this document."""
    return ok(build())
