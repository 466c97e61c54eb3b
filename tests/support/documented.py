"""An admin API client that holds every answer to the OpenAPI document: the answer's status
must be one the document lists for that route, and its body must validate against the schema
the document gives for that status (OpenAPI 3.1's JSON Schema dialect, checked by
``openapi-schema-validator``, which ``openapi-spec-validator`` brings). It remembers which
routes answered what, so a test can require that every route was seen succeeding."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from openapi_schema_validator import OAS31Validator

from proxy.admin.openapi import build
from proxy.admin.routes import PREFIX, ROUTES, Route
from tests.support.admin_app import Client


def _pattern(route: Route) -> re.Pattern[str]:
    """The route's path as a regular expression, as aiohttp matches it."""
    parts = re.split(r"\{(\w+)(?::([^}]+))?\}", route.path)  # text, name, regex, text, ...
    out = re.escape(PREFIX)
    for index in range(0, len(parts), 3):
        out += re.escape(parts[index])
        if index + 1 < len(parts):
            out += f"(?P<{parts[index + 1]}>{parts[index + 2] or '[^/]+'})"
    return re.compile(out)


PATTERNS = [(route, _pattern(route)) for route in ROUTES]


def route_of(method: str, path: str) -> Route:
    for route, pattern in PATTERNS:
        if route.method == method and pattern.fullmatch(path):
            return route
    raise AssertionError(f"no admin route serves {method} {path}")


def _schema_of(route: Route, status: int) -> tuple[str, dict[str, Any]]:
    document = build()
    responses = document["paths"][route.template][route.method.lower()]["responses"]
    assert str(status) in responses, f"{route.name} answered {status}, which is not documented"
    answer = responses[str(status)]
    if "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    ((media_type, content),) = answer["content"].items()
    return media_type, {**content["schema"], "components": document["components"]}


@dataclass
class Documented:
    """Calls the admin API through ``client`` and checks each answer against the document."""

    client: Client
    headers: dict[str, str]
    seen: set[tuple[str, int]] = field(default_factory=set)

    async def call(
        self,
        method: str,
        path: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """The decoded body of ``method path``, which must answer ``status``."""
        full = PREFIX + path
        resp = await self.client.request(method, full, headers=headers or self.headers, **kwargs)
        raw = await resp.read()
        assert resp.status == status, raw[:500]
        route = route_of(method, full.split("?")[0])
        media_type, schema = _schema_of(route, resp.status)
        assert resp.content_type == media_type
        body = json.loads(raw)
        OAS31Validator.check_schema(schema)
        errors = sorted(OAS31Validator(schema).iter_errors(body), key=str)
        assert not errors, f"{route.name} {status}: " + "; ".join(e.message for e in errors[:5])
        self.seen.add((route.name, resp.status))
        return body
