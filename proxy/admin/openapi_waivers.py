"""The OpenAPI description of ``/policies`` and ``/waivers`` (see ``proxy.admin.openapi``)."""

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
    _nullable,
    _query,
    _ref,
)
from proxy.admin.releases import MAX_RELEASE, MAX_RELEASE_SECONDS

PATTERN: Schema = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^\S+$"}


def waiver_schemas() -> dict[str, Schema]:
    return {**_waiver_request_schema(), **_waiver_result_schemas()}


def _waiver_request_schema() -> dict[str, Schema]:
    return {
        "WaiverRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["finding", "scope", "reason"],
            "description": "At most one of `expires_in_seconds` and `expires_at`; neither means "
            "the waiver lasts until withdrawn. The author is the caller.",
            "properties": {
                "finding": {
                    **PATTERN,
                    "description": "A rule id (`CVE-2024-1`) or `verifier:rule` "
                    "(`config-sanity:config.no-user`).",
                },
                "scope": {
                    **PATTERN,
                    "description": "Repository glob it applies in (`team/*`, `team/app`); "
                    "must lie within what the caller administers (else 403).",
                },
                "reason": REASON,
                "actor": ACTOR,
                "expires_in_seconds": _nullable(
                    {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_RELEASE_SECONDS}
                ),
                "expires_at": {
                    **TIME_OR_NULL,
                    "description": "In the future, with a zone offset (converted to UTC), at "
                    f"most {MAX_RELEASE.days} days from now, like a release.",
                },
            },
        },
    }


def _waiver_result_schemas() -> dict[str, Schema]:
    return {
        "Waiver": {
            "type": "object",
            "required": ["source", "finding", "scope", "reason", "author", "status"],
            "properties": {
                "source": {
                    "type": "string",
                    "enum": ["database", "settings"],
                    "description": "`database`: made over this API (has an `id`); "
                    "`settings`: in a policy of the settings file (has a `policy`).",
                },
                "id": {"type": "integer"},
                "policy": TEXT,
                "finding": TEXT,
                "scope": TEXT,
                "reason": TEXT,
                "author": TEXT,
                "created_at": TIME_OR_NULL,
                "expires_at": TIME_OR_NULL,
                "status": {"type": "string", "enum": ["active", "expired", "withdrawn"]},
                "withdrawn_at": TIME_OR_NULL,
                "withdrawn_by": STRING_OR_NULL,
                "withdraw_reason": STRING_OR_NULL,
            },
        },
        "Reevaluation": {
            "type": "object",
            "description": "The verdicts decided again from stored findings (no layer read).",
            "properties": {
                "reevaluated": {"type": "integer"},
                "changed": {"type": "integer"},
                "quarantined": {"type": "integer"},
                "notified": {"type": "integer"},
                "skipped_unreadable": {"type": "integer"},
                "queued": {"type": "integer"},
                "seconds": {"type": "number"},
            },
        },
        "WaiverChange": {
            "type": "object",
            "required": ["waiver", "reevaluation"],
            "properties": {"waiver": _ref("Waiver"), "reevaluation": _ref("Reevaluation")},
        },
    }


def _policies_path() -> dict[str, Any]:
    return {
        "get": {
            "operationId": "effectivePolicies",
            "summary": "The policy in force for images of one repository from one origin "
            "(the settings file's, with the stored waivers that apply there) and its version; "
            "without `repository`, the settings file's policies (a reader of every "
            "repository).",
            "parameters": [
                _query("repository", TEXT, "The repository."),
                _query(
                    "origin",
                    TEXT,
                    "`local` (pushed here) or a remote's name; default: the origin of the "
                    "repository's images that were not pushed here.",
                ),
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "repository": TEXT,
                            "origin": TEXT,
                            "policy": _ref("Policy"),
                            "version": TEXT,
                            "policies": {"type": "array", "items": _ref("Policy")},
                        },
                    },
                    "The policy (with `repository`) or the policies.",
                ),
                **_errors("BadRequest"),
            },
        }
    }


WAIVER_ID: Schema = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def waiver_paths() -> dict[str, Any]:
    return {**_policy_and_waiver_paths(), **_withdraw_path()}


def _policy_and_waiver_paths() -> dict[str, Any]:
    return {
        P + "/policies": _policies_path(),
        P + "/waivers": {
            "get": {
                "operationId": "listWaivers",
                "summary": "Waivers, stored and from the settings file: those that concern "
                "`repository`, or those within what the caller may read.",
                "parameters": [
                    _query("repository", TEXT, "Only the waivers that apply to it."),
                    _query(
                        "all",
                        {"type": "boolean", "default": False},
                        "Also expired and withdrawn ones.",
                    ),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"waivers": {"type": "array", "items": _ref("Waiver")}},
                        },
                        "The waivers.",
                    ),
                    **_errors("BadRequest"),
                },
            },
            "post": {
                "operationId": "waive",
                "summary": "Accept a finding within a repository pattern: stored, applied with "
                "the settings file's waivers, and the verdicts it touches decided again from "
                "stored findings before the answer (webhooks fire for each change). An admin's "
                "hold is never lifted by a waiver.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("WaiverRequest")}},
                },
                "responses": {
                    "201": _json(_ref("WaiverChange"), "Made, and applied."),
                    **_errors("BadRequest", "Unprocessable"),
                },
            },
        },
    }


def _withdraw_path() -> dict[str, Any]:
    return {
        P + "/waivers/{id}/withdraw": {
            "parameters": [WAIVER_ID],
            "post": {
                "operationId": "withdrawWaiver",
                "summary": "Withdraw a stored waiver (kept, marked withdrawn); what it let "
                "through is decided again and quarantined where its findings block.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ReasonRequest")}},
                },
                "responses": {
                    "200": _json(_ref("WaiverChange"), "Withdrawn, and applied."),
                    **_errors("BadRequest", "NotFound", "Conflict", "Unprocessable"),
                },
            },
        },
    }
