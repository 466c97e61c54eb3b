"""What every console answer carries and how its failures look.

The Content-Security-Policy allows the console's own style sheet and nothing else: no script
at all (the console has none, so an injected one cannot run), no frames of it elsewhere
(clickjacking), forms posting only to itself. Pages are never cached: they show who may pull
what, and a shared browser's back button must not show them after sign-out.

Failures are pages, not JSON: an :class:`AdminError` (the admin API's catalogue, raised by the
same checks and actions) becomes a page with its status and message, and the message is the
reason on the request's access-log row, as in the admin API.
"""

from __future__ import annotations

import logging

from aiohttp import web

from proxy.admin.errors import AdminCode, AdminError
from proxy.context import info
from proxy.errors import Handler
from proxy.ui.render import page
from storage.db import DATABASE_ERRORS

log = logging.getLogger("gatekeeper.console")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` of the console: every answer (page, error, redirect, download)
    gets the headers as it is sent, including streamed exports."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/ui/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AdminError as exc:
        failure = exc
    except web.HTTPNotFound:
        failure = AdminError(AdminCode.NOT_FOUND, f"there is no console page {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        failure = AdminError(
            AdminCode.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}"
        )
        failure.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
    except web.HTTPRequestEntityTooLarge:
        failure = AdminError(AdminCode.TOO_LARGE, "the form is too large")
    except web.HTTPException:
        raise
    except OSError:
        raise  # the browser went away
    except DATABASE_ERRORS as exc:
        log.error("console %s %s: database error: %s", request.method, request.path, exc)
        failure = AdminError(
            AdminCode.UNAVAILABLE, "the gatekeeper's database is unavailable; try again shortly"
        )
    except Exception:
        log.exception("unhandled error on console %s %s", request.method, request.path)
        failure = AdminError(
            AdminCode.INTERNAL, "internal error; the gatekeeper's log has the details"
        )
    record = info(request)
    record.reason = failure.message
    if failure.code.status in (401, 403):
        record.decision = "deny"
    response = page(
        request,
        "error.html",
        {"status": failure.code.status, "code": failure.code.code, "message": failure.message},
        status=failure.code.status,
    )
    response.headers.update(failure.headers)
    return response
