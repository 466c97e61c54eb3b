"""One catalogue of OCI Distribution error codes and the one place that writes error envelopes.

Handlers never build error bodies themselves: they raise :class:`OCIError` with a code from
:class:`Code`, and :func:`error_middleware` turns it (or any unexpected exception) into the
spec's ``{"errors": [{"code", "message", "detail"}]}`` envelope. A client therefore never sees a
traceback, and the status for a code is decided in exactly one table.

A request aiohttp's HTTP parser cannot take (a header line over 8190 bytes, a malformed request
line) never reaches a middleware; ``proxy/server.py`` answers it with the same envelope, from
``parse_failure``, and records it in the access log.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from storage.db import DATABASE_ERRORS

log = logging.getLogger("gatekeeper.errors")


class Code(enum.Enum):
    """Spec error codes (plus UNAVAILABLE for a failing upstream) and their HTTP status."""

    BLOB_UNKNOWN = ("BLOB_UNKNOWN", 404, "blob unknown to registry")
    BLOB_UPLOAD_INVALID = ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
    BLOB_UPLOAD_UNKNOWN = ("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry")
    DIGEST_INVALID = ("DIGEST_INVALID", 400, "provided digest did not match uploaded content")
    MANIFEST_BLOB_UNKNOWN = ("MANIFEST_BLOB_UNKNOWN", 404, "manifest references a blob unknown")
    MANIFEST_INVALID = ("MANIFEST_INVALID", 400, "manifest invalid")
    MANIFEST_TOO_LARGE = ("MANIFEST_INVALID", 413, "manifest too large")
    MANIFEST_UNKNOWN = ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry")
    NAME_INVALID = ("NAME_INVALID", 400, "invalid repository name")
    NAME_UNKNOWN = ("NAME_UNKNOWN", 404, "repository name not known to registry")
    SIZE_INVALID = ("SIZE_INVALID", 400, "provided length did not match content length")
    UNAUTHORIZED = ("UNAUTHORIZED", 401, "authentication required")
    DENIED = ("DENIED", 403, "requested access to the resource is denied")
    DENIED_UNAVAILABLE = ("DENIED", 503, "cannot be verified right now")
    DENIED_INSUFFICIENT_SCOPE = ("DENIED", 401, "requested access to the resource is denied")
    UNSUPPORTED = ("UNSUPPORTED", 405, "the operation is unsupported")
    CLIENT_BODY_TIMEOUT = ("BLOB_UPLOAD_INVALID", 408, "the request body arrived too slowly")
    MANIFEST_BODY_TIMEOUT = ("MANIFEST_INVALID", 408, "the manifest body arrived too slowly")
    TOO_MANY_REQUESTS = ("TOOMANYREQUESTS", 429, "too many requests")
    RANGE_INVALID = ("RANGE_INVALID", 416, "invalid content range")
    RANGE_NOT_SATISFIABLE = ("RANGE_INVALID", 416, "requested range not satisfiable")
    PAGINATION_INVALID = ("PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested")
    REFERENCE_INVALID = ("TAG_INVALID", 400, "manifest reference invalid")
    UPSTREAM_UNAVAILABLE = ("UNAVAILABLE", 503, "upstream registry unavailable")
    UPSTREAM_BAD_GATEWAY = ("UNAVAILABLE", 502, "upstream registry failed")
    UNAVAILABLE = ("UNAVAILABLE", 503, "service unavailable")
    NOT_FOUND = ("NOT_FOUND", 404, "no such endpoint")
    METHOD_NOT_ALLOWED = ("UNSUPPORTED", 405, "method not allowed on this endpoint")
    INTERNAL = ("UNKNOWN", 500, "internal error")
    GATEWAY_TIMEOUT = ("UNAVAILABLE", 504, "the request timed out")
    REQUEST_MALFORMED = ("UNSUPPORTED", 400, "the request is not valid HTTP")
    HEADERS_TOO_LARGE = ("UNSUPPORTED", 431, "request header fields too large")
    HEADERS_TIMEOUT = ("UNSUPPORTED", 408, "the request headers arrived too slowly")
    CONNECTIONS_EXHAUSTED = ("UNAVAILABLE", 503, "too many connections")

    def __init__(self, code: str, status: int, default_message: str) -> None:
        self.code = code
        self.status = status
        self.default_message = default_message


class OCIError(Exception):
    """An error a client should see, as an OCI error envelope.

    ``detail`` must be JSON-serialisable and must never carry credentials.
    """

    def __init__(
        self,
        code: Code,
        message: str | None = None,
        detail: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message or code.default_message
        self.detail = detail
        self.headers = headers or {}
        super().__init__(f"{code.code}: {self.message}")


OCI_ERROR: web.RequestKey[OCIError] = web.RequestKey("gatekeeper_oci_error", OCIError)
"""The error a request was answered with, for its access-log row."""


def envelope(errors: list[OCIError]) -> bytes:
    """The spec's error body for one or more errors."""
    body = {
        "errors": [
            {"code": err.code.code, "message": err.message, "detail": err.detail} for err in errors
        ]
    }
    return json.dumps(body, separators=(",", ":")).encode()


def error_response(err: OCIError, *, head: bool = False) -> web.Response:
    """Render one error; HEAD responses keep the status and headers but carry no body."""
    body = envelope([err])
    headers = {"Docker-Distribution-API-Version": "registry/2.0", **err.headers}
    if head:
        headers["Content-Length"] = str(len(body))
        return web.Response(status=err.code.status, headers=headers)
    return web.Response(
        status=err.code.status, body=body, content_type="application/json", headers=headers
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into an envelope; unexpected exceptions are logged, never shown."""
    try:
        return await handler(request)
    except OCIError as exc:
        failure = exc
    except web.HTTPNotFound:
        failure = OCIError(Code.NOT_FOUND, f"no endpoint for {request.method} {request.path}")
    except web.HTTPMethodNotAllowed:
        failure = OCIError(Code.METHOD_NOT_ALLOWED, f"{request.method} is not allowed here")
    except web.HTTPRequestEntityTooLarge as exc:
        failure = OCIError(Code.SIZE_INVALID, exc.text or "request body too large")
    except web.HTTPException:
        raise
    except ConnectionError as exc:
        # The client went away (aborted mid-PATCH, hung up mid-download: aiohttp raises
        # ConnectionResetError, BrokenPipeError or a plain ConnectionError("Connection lost"));
        # there is nobody to answer. Upstream failures arrive as OCIError (proxy.upstream) and
        # database failures as storage's own errors, so no ConnectionError here is either.
        log.info("client connection lost on %s %s: %s", request.method, request.path, exc)
        raise
    except DATABASE_ERRORS as exc:
        log.error("database unavailable on %s %s: %s", request.method, request.path, exc)
        failure = database_unavailable(exc)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        failure = OCIError(Code.INTERNAL, "internal error; the gatekeeper's log has the details")
    request[OCI_ERROR] = failure
    return error_response(failure, head=request.method == "HEAD")


def database_unavailable(exc: BaseException) -> OCIError:
    """The 503 for a failing database; a full disk is named, since an operator can fix it."""
    if "database or disk is full" in str(exc):
        return OCIError(
            Code.UNAVAILABLE,
            "the gatekeeper's database is full (no space left for it); try again shortly",
            {"reason": "database full"},
        )
    return OCIError(Code.UNAVAILABLE, "the gatekeeper's database is unavailable; try again shortly")
