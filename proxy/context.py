"""What a handler learns about a request, collected for the access log.

Handlers fill one :class:`RequestInfo` per request; the audit middleware turns it into the
request's single access-log row. Keeping it in one typed object (instead of loose
``request["..."]`` keys) is what guarantees every row has the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass
class RequestInfo:
    """Mutable per-request facts; every field is optional until a handler sets it."""

    request_id: str = ""
    action: str = "unknown"
    repository: str | None = None
    reference: str | None = None
    digest: str | None = None
    identity: str = "anonymous"
    bytes_in: int = 0
    bytes_out: int | None = None
    """Body bytes sent; None means "derive from the response" (small JSON, sendfile)."""
    upstream_status: int | None = None
    decision: str | None = None
    reason: str | None = None
    client_aborted: bool = False
    upstream_aborted: bool = False


INFO: web.RequestKey[RequestInfo] = web.RequestKey("gatekeeper_info", RequestInfo)


def info(request: web.Request) -> RequestInfo:
    """The request's info, created on first use."""
    found = request.get(INFO)
    if found is None:
        found = RequestInfo()
        request[INFO] = found
    return found
