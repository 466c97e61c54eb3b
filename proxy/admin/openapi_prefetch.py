"""The prefetch endpoint's part of the OpenAPI document (``proxy.admin.openapi``)."""

from __future__ import annotations

from typing import Any

from proxy.admin.openapi_parts import (
    ACTOR,
    REASON,
    STRING_OR_NULL,
    TEXT,
    P,
    Schema,
    _errors,
    _json,
    _nullable,
    _ref,
)


def prefetch_schemas() -> dict[str, Schema]:
    return {
        "PrefetchRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["images"],
            "properties": {
                "images": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 100,
                    "items": {**TEXT, "examples": ["library/alpine:3.20"]},
                    "description": "`REPOSITORY:TAG` or `REPOSITORY@sha256:...`; the caller "
                    "must administer each repository.",
                },
                "again": {
                    "type": "boolean",
                    "default": False,
                    "description": "Verify again an image that already has a verdict.",
                },
                "reason": _nullable(REASON),
                "actor": ACTOR,
            },
        },
        "Prefetched": {
            "type": "object",
            "properties": {
                "reference": TEXT,
                "repository": TEXT,
                "digest": {**STRING_OR_NULL, "description": "Once fetched."},
                "origin": {
                    **STRING_OR_NULL,
                    "description": "The remote it comes from, or `local`.",
                },
                "queued": {
                    "type": "boolean",
                    "description": "A verification was queued (false: its verdict stood and "
                    "`again` was not asked).",
                },
                "state": {**STRING_OR_NULL, "description": "Its verdict's state right after."},
                "error": {
                    **STRING_OR_NULL,
                    "description": "Why it could not be fetched; names the remote (down, rate "
                    "limiting, no such image).",
                },
            },
        },
    }


def prefetch_paths() -> dict[str, Any]:
    return {
        P + "/prefetch": {
            "post": {
                "operationId": "prefetch",
                "summary": "Fetch images through the registry (a registry in proxy mode fetches "
                "them from its remote) and queue their verification, before anyone pulls "
                "them. The verdicts follow: poll `/images/{repository}@{digest}`.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("PrefetchRequest")}},
                },
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {
                                "images": {"type": "array", "items": _ref("Prefetched")}
                            },
                        },
                        "What became of each image.",
                    ),
                    **_errors("BadRequest", "Unprocessable"),
                },
            }
        }
    }
