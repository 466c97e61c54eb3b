"""Building blocks of the admin API's OpenAPI document (``proxy.admin.openapi``), shared by
the modules that describe its resources (``proxy.admin.openapi_waivers``)."""

from __future__ import annotations

from typing import Any

from proxy.admin.common import MAX_LIMIT, STATES

P = "/admin/api/v1"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*names: str) -> dict[str, Schema]:
    status = {
        "BadRequest": "400",
        "Unauthorized": "401",
        "Forbidden": "403",
        "NotFound": "404",
        "Conflict": "409",
        "Unprocessable": "422",
    }
    every = ("Unauthorized", "Forbidden", *names)
    return {status[n]: {"$ref": f"#/components/responses/{n}"} for n in every}


TEXT: Schema = {"type": "string"}
STRING_OR_NULL = _nullable(TEXT)
TIME: Schema = {"type": "string", "format": "date-time"}
TIME_OR_NULL = _nullable(TIME)
STATE: Schema = {"type": "string", "enum": list(STATES)}
PLAIN = "No control or bidirectional-control characters (refused with 422)."
ACTOR: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "description": f"Who is acting; recorded as `admin-token:<actor>`. {PLAIN}",
}
REASON: Schema = {"type": "string", "minLength": 1, "maxLength": 2000, "description": PLAIN}

REFERENCE = {
    "name": "reference",
    "in": "path",
    "required": True,
    "description": "`REPOSITORY@DIGEST`; the repository may contain `/` (sent unescaped).",
    "schema": {"type": "string", "examples": ["team/app@sha256:" + "0" * 64]},
}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


LIMIT = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
    "At most this many.",
)
