"""The client's address behind a load balancer, from ``X-Forwarded-For`` of trusted proxies.

Behind a balancer every request comes from the balancer's address, so the access log, the
per-address login throttle and the anonymous upload cap would all see one client. The header is
believed only when the connection comes from a configured proxy (``trusted_proxies``); the
client is the right-most address in the chain that is not itself a trusted proxy, since each
proxy appends the address it saw and anything to the left of a trusted entry was written by the
client. Not aiohttp-remotes: its filtered mode believes the header from any peer, and its strict
mode also rewrites Host and scheme, which our Location rewriting must not see.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import hdrs, web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def trusted(address: str | None, networks: Sequence[Network]) -> bool:
    """Whether ``address`` is one of the ``trusted_proxies`` networks."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(
    peer: str | None, forwarded: list[str], networks: Sequence[Network]
) -> str | None:
    """The client's address given the connection's peer and the ``X-Forwarded-For`` values."""
    if not networks or not forwarded or not trusted(peer, networks):
        return peer
    chain = [part.strip() for value in forwarded for part in value.split(",")]
    for candidate in reversed(chain):
        try:
            ipaddress.ip_address(candidate)
        except ValueError:
            return peer  # a malformed chain proves nothing: keep the proxy's own address
        if not trusted(candidate, networks):
            return candidate
    return chain[0] if chain else peer


def build_forwarded_middleware(
    networks: Sequence[Network],
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Outermost middleware: every later layer (access log, throttle, upload cap) sees the
    client's address as ``request.remote``."""

    @web.middleware
    async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
        if networks and forwarded:
            remote = client_address(request.remote, forwarded, networks)
            if remote is not None and remote != request.remote:
                request = request.clone(remote=remote)
        return await handler(request)

    return forwarded_middleware
