"""The one place that writes OCI error envelopes (the codes are ``oci/errors.py``'s).

Handlers never build error bodies themselves: they raise :class:`~oci.errors.OCIError` with a
code from :class:`~oci.errors.Code`, and :func:`error_middleware` turns it (or any unexpected
exception) into the spec's ``{"errors": [{"code", "message", "detail"}]}`` envelope. A client
therefore never sees a traceback, and the status for a code is decided in exactly one table.

A request aiohttp's HTTP parser cannot take (a header line over 8190 bytes, a malformed request
line) never reaches a middleware; ``proxy/server.py`` answers it with the same envelope, from
``parse_failure``, and records it in the access log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from oci.errors import Code, OCIError
from storage.db import DATABASE_ERRORS

log = logging.getLogger("gatekeeper.errors")


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
        # there is nobody to answer. Upstream failures arrive as OCIError (upstream.client) and
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
