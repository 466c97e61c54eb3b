"""Pieces every resource handler shares: validated path parts, scopes, forwarding."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from oci.errors import OCIError
from proxy.context import info
from proxy.forward import body_failure, counted_body, public_base, relay, request_headers
from proxy.gate import Presence
from proxy.names import check_digest, check_name
from proxy.state import services
from upstream.client import v2_path


def repository(request: web.Request) -> str:
    """The validated repository name, recorded for the access log."""
    name = check_name(request.match_info["name"])
    info(request).repository = name
    return name


def digest_param(request: web.Request, key: str = "digest") -> str:
    """A validated digest from the path."""
    digest = check_digest(request.match_info[key])
    info(request).digest = digest
    return digest


def scopes(name: str, *actions: str) -> tuple[str, ...]:
    return (f"repository:{name}:{','.join(actions)}",)


def public(request: web.Request) -> URL:
    configured = services(request).settings.public_url
    return public_base(request, str(configured) if configured else None)


async def forward(
    request: web.Request,
    path: str,
    *,
    scope: tuple[str, ...],
    params: Mapping[str, str] | None = None,
    stream_body: bool = False,
    extra_headers: Mapping[str, str] | None = None,
    before_relay: Callable[[aiohttp.ClientResponse], Awaitable[None]] | None = None,
) -> web.StreamResponse:
    """Send the request upstream (streaming its body if asked) and relay the answer.

    ``before_relay`` sees the upstream's answer before the client does (and may refuse it by
    raising): what must be recorded before the client can act on the answer is recorded there.
    """
    svc = services(request)
    headers = request_headers(request)
    headers.update(extra_headers or {})
    timeout = svc.settings.client_body_timeout_seconds
    data: Any = counted_body(request, timeout) if stream_body else None
    if not stream_body:
        headers.popall("Content-Length", None)
    try:
        resp = await svc.upstream.request(
            request.method,
            path,
            scopes=scope,
            params=params,
            headers=headers,
            data=data,
            replayable=not stream_body,
        )
    except OCIError as exc:
        # A stalled client body aborts the upstream request; say so, not "upstream failed".
        failure = body_failure(request)
        if failure is None:
            raise
        raise failure from exc
    try:
        if before_relay is not None:
            await before_relay(resp)
        return await relay(request, resp, svc.upstream.base, public(request))
    finally:
        resp.release()


def upstream_has(request: web.Request, name: str, digest: str) -> Presence:
    """Whether the registry holds blob ``digest`` in repository ``name`` (asked with the
    gatekeeper's own credentials, so only when the gate needs to know: see ``proxy.gate``)."""

    async def present() -> bool | None:
        upstream = services(request).upstream
        try:
            async with await upstream.request(
                "HEAD", v2_path(name, "blobs", digest), scopes=scopes(name, "pull")
            ) as resp:
                status = resp.status
        except OCIError:
            return None
        if status == 404:
            return False
        return True if 200 <= status < 400 else None

    return present
