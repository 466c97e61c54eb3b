"""Moving requests and responses between client and upstream without changing a byte.

Bodies are streamed chunk by chunk in both directions and never re-encoded (digests must not
change). Headers are passed by allow-list: only what the Distribution protocol needs crosses
the gatekeeper, so client credentials never reach the upstream and the upstream's challenges
and internal addresses never reach the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from oci.errors import Code, OCIError
from proxy.context import info
from proxy.hostheader import checked_host

log = logging.getLogger("gatekeeper.forward")

REQUEST_HEADERS = frozenset(
    h.lower()
    for h in (
        "Accept",
        "Content-Type",
        "Content-Length",
        "Content-Range",
        "Range",
        "If-None-Match",
        "If-Match",
        "If-Modified-Since",
    )
)
RESPONSE_HEADERS = frozenset(
    h.lower()
    for h in (
        "Content-Type",
        "Content-Length",
        "Content-Range",
        "Accept-Ranges",
        "Range",
        "ETag",
        "Last-Modified",
        "Cache-Control",
        "Docker-Content-Digest",
        "Docker-Upload-UUID",
        "Docker-Distribution-API-Version",
        "OCI-Subject",
        "OCI-Filters-Applied",
        "OCI-Chunk-Min-Length",
        "X-Content-Type-Options",
        "Location",
        "Link",
    )
)
BODY_TIMED_OUT: web.RequestKey[float] = web.RequestKey("gatekeeper_body_timed_out", float)


def public_base(request: web.Request, configured: str | None) -> URL:
    """Where clients reach the gatekeeper: the configured public URL, else the request's own
    (its ``Host`` checked to be ``host[:port]``: it becomes part of URLs handed out)."""
    if configured:
        return URL(configured).with_path("")
    return URL.build(scheme=request.scheme, authority=checked_host(request))


def request_headers(request: web.Request) -> CIMultiDict[str]:
    """Allow-listed client headers, repeated ones kept: skopeo and podman send one ``Accept``
    per media type, and keeping only the last would hide OCI manifests from them."""
    return CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() in REQUEST_HEADERS)


def rewrite_url(value: str, upstream: URL, public: URL) -> str:
    """Point an upstream URL (absolute or path-only) at the gatekeeper; leave foreign URLs
    (object-storage redirects) untouched."""
    url = URL(value, encoded=True)
    if not url.is_absolute():
        return str(public.join(url)) if value.startswith("/") else value
    if url.origin() == upstream.origin():
        return str(public.join(URL(url.raw_path_qs, encoded=True)))
    return value


def rewrite_link(value: str, upstream: URL, public: URL) -> str:
    """``Link: <url>; rel="next"``: rewrite only the URL between the angle brackets."""
    start, end = value.find("<"), value.find(">")
    if start == -1 or end < start:
        return value
    return value[: start + 1] + rewrite_url(value[start + 1 : end], upstream, public) + value[end:]


def response_headers(
    upstream_headers: Mapping[str, str], upstream: URL, public: URL
) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in upstream_headers.items():
        lower = key.lower()
        if lower not in RESPONSE_HEADERS:
            continue
        if lower == "location":
            value = rewrite_url(value, upstream, public)
        elif lower == "link":
            value = rewrite_link(value, upstream, public)
        out.add(key, value)
    return out


async def counted_body(request: web.Request, idle_timeout: float) -> AsyncIterator[bytes]:
    """The client's request body as a stream, counted for the access log.

    If the client disconnects mid-body the read fails; that is recorded and re-raised so the
    upstream request is aborted instead of completing with a truncated body. A client that
    sends nothing for ``idle_timeout`` seconds (a trickling, slowloris-style upload) gets the
    same treatment, and :func:`body_failure` tells the handler to answer 408 instead of 502.
    """
    record = info(request)
    stream = request.content
    try:
        while True:
            async with asyncio.timeout(idle_timeout):
                chunk = await stream.readany()
            if not chunk:
                return
            record.bytes_in += len(chunk)
            yield chunk
    except TimeoutError:
        request[BODY_TIMED_OUT] = idle_timeout
        log.info("client body of %s %s stalled for %ss", request.method, request.path, idle_timeout)
        raise
    except (
        ConnectionError,
        aiohttp.ClientPayloadError,
        aiohttp.http_exceptions.HttpProcessingError,
    ):
        record.client_aborted = True
        log.info("client aborted the request body of %s %s", request.method, request.path)
        raise


def body_failure(request: web.Request) -> OCIError | None:
    """The error to answer with if :func:`counted_body` gave up on a stalled client."""
    timeout = request.get(BODY_TIMED_OUT)
    if timeout is None:
        return None
    return OCIError(
        Code.CLIENT_BODY_TIMEOUT,
        f"the request body stalled: nothing arrived for {timeout:g} seconds",
        {"client_body_timeout_seconds": timeout},
    )


async def relay(
    request: web.Request,
    resp: aiohttp.ClientResponse,
    upstream: URL,
    public: URL,
    *,
    extra: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Stream an upstream response to the client, headers filtered (plus ``extra``, which the
    gatekeeper vouches for), body untouched.

    If the upstream fails mid-body the client connection is aborted, so the client sees a
    truncated transfer as an error rather than a short success. If the client hangs up
    mid-body, the bytes handed to the connection until then are recorded (a 499 row).
    """
    record = info(request)
    record.upstream_status = resp.status
    headers = response_headers(resp.headers, upstream, public)
    headers.update(extra or {})
    out = web.StreamResponse(status=resp.status, headers=headers)
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit():
        out.content_length = int(length)
    await out.prepare(request)
    sent = 0
    if request.method != "HEAD":
        try:
            # iter_any hands over whatever arrived, without re-slicing it into fixed chunks.
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
                sent += len(chunk)
        except ConnectionError:
            record.client_aborted = True
            record.bytes_out = sent
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            record.upstream_aborted = True
            record.bytes_out = sent
            log.warning("upstream failed mid-body on %s %s: %r", request.method, request.path, exc)
            if request.transport is not None:
                request.transport.abort()
            return out
    record.bytes_out = sent
    await out.write_eof()
    return out
