"""The admin API's OpenAPI 3.1 document, generated and served at ``/openapi.json``.

Generated, not written: the paths and methods come from the route table
(``proxy.admin.routes``), the schemas from the models the handlers validate requests with
(``proxy.admin.bodies``) and build every answer through (``proxy.admin.models``), and only the
words (summaries, query parameters, which errors a route can answer) from
``proxy.admin.openapi_operations``. A hand-written copy drifted: its ``Waiver`` schema was
silently replaced by the settings file's waiver model of the same name.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

from proxy.admin.access import Need
from proxy.admin.models import Error
from proxy.admin.openapi_operations import OPERATIONS, PATH_PARAMETERS, Operation, Schema

REF = "#/components/schemas/{model}"

NEEDS = {
    Need.READ: "Needs `admin`, `auditor` or `quarantine-reader` on the repository.",
    Need.ACT: "Needs `admin` on the repository (or, for a pattern, on all it matches).",
    Need.SETTINGS: "Needs the global admin: a grant on `*`, or the admin token.",
}


class _Names(GenerateJsonSchema):
    """Names a request body model ``XBody`` as ``XRequest`` in the document, and an answer
    model ``XOut`` (named so beside the stored ``X`` it is built from) as ``X``."""

    def normalize_name(self, name: str) -> str:
        base = super().normalize_name(name)
        if base.endswith("Body"):
            return base.removesuffix("Body") + "Request"
        return base.removesuffix("Out")

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # "title": "Repository" beside "repository" says nothing


def _schemas(
    operations: list[Operation],
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], Schema], dict[str, Schema]]:
    """Every model's schema: bodies as they are validated, answers as they are serialized."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Error, "serialization"): None}
    for op in operations:
        if op.body is not None:
            wanted[(op.body, "validation")] = None
        for model in op.returns:
            wanted[(model, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF, schema_generator=_Names)
    return {key: refs[key] for key in wanted}, top.get("$defs", {})


def _json(schema: Schema, description: str, media_type: str = "application/json") -> Schema:
    return {"description": description, "content": {media_type: {"schema": schema}}}


Refs = dict[tuple[type[BaseModel], JsonSchemaMode], Schema]
STATUS = {"BadRequest": 400, "Unauthorized": 401, "Forbidden": 403, "NotFound": 404}
STATUS |= {"Conflict": 409, "Unprocessable": 422}


def _responses(op: Operation, refs: Refs, *, in_path: bool) -> Schema:
    """The answer, then the errors: 401 and 403 anywhere, 404 wherever a path parameter may
    not match its route (a newline in a reference: no such endpoint), and the route's own."""
    answers = [refs[(model, "serialization")] for model in op.returns]
    schema = (
        answers[0] if len(answers) == 1 else {"oneOf": answers} if answers else {"type": "object"}
    )
    names = {"Unauthorized", "Forbidden", *op.errors, *(["NotFound"] if in_path else [])}
    errors = {
        str(STATUS[name]): {"$ref": f"#/components/responses/{name}"}
        for name in sorted(names, key=STATUS.__getitem__)
    }
    return {str(op.status): _json(schema, op.says, op.media_type), **errors}


def _operation(op: Operation, need: Need, refs: Refs, *, in_path: bool) -> Schema:
    operation: Schema = {"operationId": op.id, "summary": op.summary, "description": NEEDS[need]}
    if op.query:
        operation["parameters"] = list(op.query)
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    operation["responses"] = _responses(op, refs, in_path=in_path)
    return operation


def _path_parameters(template: str) -> list[Schema]:
    names = [part[1:-1] for part in template.split("/") if part.startswith("{")]
    return [{"name": n, "in": "path", "required": True, **PATH_PARAMETERS[n]} for n in names]


def paths_and_schemas() -> tuple[dict[str, Any], dict[str, Schema]]:
    """The ``paths`` of every route in the table, and the schemas they refer to."""
    from proxy.admin.routes import ROUTES  # the route table imports this module's handler

    refs, schemas = _schemas([OPERATIONS[route.name] for route in ROUTES])
    paths: dict[str, Any] = {}
    for route in ROUTES:
        item = paths.setdefault(route.template, {})
        if "{" in route.template:
            item["parameters"] = _path_parameters(route.template)
        operation = OPERATIONS[route.name]
        item[route.method.lower()] = _operation(
            operation, route.need, refs, in_path="{" in route.template
        )
    return paths, schemas


def _error_response(description: str) -> Schema:
    return _json({"$ref": REF.format(model="Error")}, description)


ERRORS = {
    "BadRequest": "Malformed request: JSON, path or query.",
    "Unauthorized": "No token, a wrong token, or the admin API is disabled.",
    "Forbidden": "The identity may not do this here: the message names what it may administer "
    "and read.",
    "NotFound": "No such image verdict (or inventory, for an SBOM; or stored waiver or VEX "
    "document), or no endpoint at that path (a path parameter its route refuses).",
    "Conflict": "The image is not in a state the action applies to.",
    "Unprocessable": "A body field is invalid; `details` names each.",
}

SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The break-glass `admin_token` from settings (a global admin), or a "
        "token from the gatekeeper's `/auth/token` endpoint (the identity's roles apply). With "
        "neither a token configured nor client authentication on, the API is disabled and "
        "every request is 401.",
    },
    "login": {
        "type": "http",
        "scheme": "basic",
        "description": "A user's or robot's credentials. `admin` on a repository pattern acts "
        "there (on `*`: settings-wide actions too); `auditor` and `quarantine-reader` read "
        "there; anything else is 403.",
    },
}

DESCRIPTION = (
    "List and inspect verdicts, release and re-quarantine images, rescan, prefetch, waive "
    "findings, accept VEX documents, dry-run and re-apply policies, export SBOMs and read the "
    "access log. Every action is written to the access log with its actor and reason. An "
    "`admin` grant on a repository pattern acts on the repositories it matches; reading needs "
    "`admin`, `auditor` or `quarantine-reader` there; policy dry-runs and re-evaluation, a "
    "rescan of every image and this document need the global admin (a grant on `*`, or the "
    "admin token). Outside its scope a caller gets 403 naming what it may administer."
)


@functools.cache
def build() -> dict[str, Any]:
    """The whole document (built once; it only depends on code)."""
    paths, schemas = paths_and_schemas()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "registry-gatekeeper admin API",
            "version": "1",
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "security": [{"adminToken": []}, {"login": []}],
        "paths": paths,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "responses": {name: _error_response(text) for name, text in ERRORS.items()},
            "schemas": schemas,
        },
    }


@functools.cache
def _encoded() -> bytes:
    return json.dumps(build(), separators=(",", ":")).encode()


async def document(request: web.Request) -> web.StreamResponse:
    """GET /openapi.json : this document."""
    return web.Response(body=_encoded(), content_type="application/json")
