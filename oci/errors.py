"""The OCI Distribution spec's error codes and the error a client is answered with.

Protocol vocabulary only: each :class:`Code` is the spec's code, the HTTP status the spec gives
it and a default message; :class:`OCIError` carries one to whoever renders it. Rendering (the
JSON envelope, the aiohttp response, the middleware) is the HTTP side's (``proxy/errors.py``),
so the upstream client, manifest parsing and the services raise the same error without
importing the web server.
"""

from __future__ import annotations

import enum
from typing import Any


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
