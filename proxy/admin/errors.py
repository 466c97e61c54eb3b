"""One catalogue of admin API errors and the one middleware that writes them.

The admin API is JSON for operators' tools, not the OCI protocol, so its envelope is
``{"error": {"code", "message"}}`` rather than the registry's ``{"errors": [...]}``. As on the
registry side (``proxy.errors``), handlers only raise :class:`AdminError`; the status of each
code is decided in one table, and nothing unexpected reaches a client as a traceback.
"""

from __future__ import annotations

import enum
import json
import logging

from aiohttp import web

from proxy.admin.models import Error, ErrorDetail, FieldError
from proxy.context import info
from proxy.errors import Handler
from storage.db import DATABASE_ERRORS

log = logging.getLogger("gatekeeper.admin")


class AdminCode(enum.Enum):
    """Admin API error codes and their HTTP status."""

    BAD_REQUEST = ("BAD_REQUEST", 400)
    """The request is malformed: not JSON, a bad query parameter, a bad path."""
    NAME_INVALID = ("NAME_INVALID", 400)
    DIGEST_INVALID = ("DIGEST_INVALID", 400)
    UNAUTHORIZED = ("UNAUTHORIZED", 401)
    ADMIN_API_DISABLED = ("ADMIN_API_DISABLED", 401)
    FORBIDDEN = ("FORBIDDEN", 403)
    """Authenticated, but the identity does not hold the ``admin`` role."""
    TOO_MANY_REQUESTS = ("TOO_MANY_REQUESTS", 429)
    NOT_FOUND = ("NOT_FOUND", 404)
    METHOD_NOT_ALLOWED = ("METHOD_NOT_ALLOWED", 405)
    CONFLICT = ("CONFLICT", 409)
    """The image is not in a state the action applies to (no verdict, already passed, ...)."""
    TOO_LARGE = ("TOO_LARGE", 413)
    INVALID_FIELD = ("INVALID_FIELD", 422)
    """Well-formed JSON whose fields fail validation; the message names each bad field."""
    UNAVAILABLE = ("UNAVAILABLE", 503)
    INTERNAL = ("INTERNAL", 500)

    def __init__(self, code: str, status: int) -> None:
        self.code = code
        self.status = status


class AdminError(Exception):
    """An error an admin client should see; the message must never carry a secret."""

    def __init__(
        self,
        code: AdminCode,
        message: str,
        *,
        details: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
        super().__init__(f"{code.code}: {message}")

    def response(self) -> web.Response:
        error = ErrorDetail(code=self.code.code, message=self.message, details=self.details or [])
        return web.Response(
            status=self.code.status,
            body=json.dumps(
                Error(error=error).model_dump(mode="json"), separators=(",", ":")
            ).encode(),
            content_type="application/json",
            headers=self.headers,
        )


def _translate(request: web.Request, exc: Exception) -> AdminError:
    if isinstance(exc, web.HTTPNotFound):
        return AdminError(
            AdminCode.NOT_FOUND,
            f"no admin endpoint {request.method} {request.path}; "
            "the endpoints are listed in /admin/api/v1/openapi.json",
        )
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return AdminError(
            AdminCode.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed on {request.path} (allowed: {allowed})",
            headers={"Allow": allowed},
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return AdminError(AdminCode.TOO_LARGE, "request body too large")
    if isinstance(exc, DATABASE_ERRORS):
        log.error("admin %s %s: database error: %s", request.method, request.path, exc)
        return AdminError(
            AdminCode.UNAVAILABLE, "the gatekeeper's database is unavailable; try again shortly"
        )
    log.exception("unhandled error on admin %s %s", request.method, request.path)
    return AdminError(AdminCode.INTERNAL, "internal error; the gatekeeper's log has the details")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin app's outermost middleware: every failure becomes the JSON envelope, and its
    message becomes the reason on the request's access-log row."""
    try:
        return await handler(request)
    except AdminError as exc:
        failure = exc
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed, web.HTTPRequestEntityTooLarge) as exc:
        failure = _translate(request, exc)
    except web.HTTPException:
        raise
    except ConnectionError:
        raise  # the client went away; there is nobody to answer (database failures are
        # storage's own errors, answered 503 by _translate)
    except Exception as exc:
        failure = _translate(request, exc)
    info(request).reason = failure.message
    return failure.response()
