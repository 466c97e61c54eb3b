"""The OpenAPI description of ``/vex`` (see ``proxy.admin.openapi``)."""

from __future__ import annotations

from typing import Any

from proxy.admin.openapi_parts import (
    ACTOR,
    REASON,
    STRING_OR_NULL,
    TEXT,
    TIME_OR_NULL,
    P,
    Schema,
    _errors,
    _json,
    _query,
    _ref,
)
from proxy.admin.openapi_waivers import PATTERN

OPENVEX: Schema = {
    "type": "object",
    "description": "An OpenVEX document (https://github.com/openvex/spec, v0.2.0 or v0.0.x): "
    "`@context`, `@id`, `author`, `timestamp` and `statements`, each with a `vulnerability`, "
    "`products` (image digests `sha256:...`, `pkg:oci/...@sha256:...`, or package purls), a "
    "`status` and, for `not_affected`, a `justification` or `impact_statement`.",
}


def vex_schemas() -> dict[str, Schema]:
    return {
        "VexRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["document", "scope", "reason"],
            "properties": {
                "document": OPENVEX,
                "scope": {
                    **PATTERN,
                    "description": "Repository glob it applies in (`team/*`, `team/app`); "
                    "must lie within what the caller administers (else 403).",
                },
                "reason": REASON,
                "actor": ACTOR,
            },
        },
        "Vex": {
            "type": "object",
            "required": ["source", "scope", "author", "status", "document"],
            "properties": {
                "source": {
                    "type": "string",
                    "enum": ["admin", "referrer", "settings"],
                    "description": "`admin`: added over this API; `referrer`: a signed "
                    "referrer of `subject`, believed because a key its policy trusts signed it "
                    "(`signer`); `settings`: a file a policy of the settings file names.",
                },
                "id": {"type": "integer"},
                "policy": TEXT,
                "file": TEXT,
                "scope": TEXT,
                "subject": STRING_OR_NULL,
                "referrer": STRING_OR_NULL,
                "signer": STRING_OR_NULL,
                "author": TEXT,
                "added_by": TEXT,
                "created_at": TIME_OR_NULL,
                "status": {"type": "string", "enum": ["active", "withdrawn"]},
                "withdrawn_at": TIME_OR_NULL,
                "withdrawn_by": STRING_OR_NULL,
                "withdraw_reason": STRING_OR_NULL,
                "document": OPENVEX,
            },
        },
        "VexChange": {
            "type": "object",
            "required": ["vex", "reevaluation"],
            "properties": {"vex": _ref("Vex"), "reevaluation": _ref("Reevaluation")},
        },
    }


def vex_paths() -> dict[str, Any]:
    vex_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
    return {
        P + "/vex": {
            "get": {
                "operationId": "listVex",
                "summary": "VEX documents in force within what the caller may read: stored "
                "(added over the API, or signed referrers of images) and the settings file's.",
                "parameters": [
                    _query("all", {"type": "boolean", "default": False}, "Also withdrawn ones."),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"vex": {"type": "array", "items": _ref("Vex")}},
                        },
                        "The documents.",
                    ),
                    **_errors("BadRequest"),
                },
            },
            "post": {
                "operationId": "addVex",
                "summary": "Accept an OpenVEX document within a repository pattern: its "
                "`not_affected` and `fixed` statements waive the findings they name for the "
                "products they name, and the verdicts they touch are decided again from stored "
                "findings before the answer (webhooks fire for each change).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("VexRequest")}},
                },
                "responses": {
                    "201": _json(_ref("VexChange"), "Stored, and applied."),
                    **_errors("BadRequest", "Unprocessable"),
                },
            },
        },
        P + "/vex/{id}/withdraw": {
            "parameters": [vex_id],
            "post": {
                "operationId": "withdrawVex",
                "summary": "Withdraw a stored VEX document (kept, marked withdrawn); what it "
                "let through is decided again and quarantined where its findings block.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ReasonRequest")}},
                },
                "responses": {
                    "200": _json(_ref("VexChange"), "Withdrawn, and applied."),
                    **_errors("BadRequest", "NotFound", "Conflict", "Unprocessable"),
                },
            },
        },
    }
