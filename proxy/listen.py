"""Binding the listening sockets, first thing at start-up.

``gatekeeper serve`` binds its port before it opens the database, starts a worker or says it
is ready: a second gatekeeper started on a busy port used to migrate the database, start its
workers and scheduler and log "gatekeeper ready" before failing to bind, taking jobs it then
dropped. Binding is what aiohttp's ``TCPSite`` would do (every address the host resolves to,
``SO_REUSEADDR``, IPv6 sockets IPv6-only); the sockets start accepting once the app is set up.
"""

from __future__ import annotations

import contextlib
import socket


class ListenError(Exception):
    """The listen address cannot be bound (in use, not this machine's, not permitted)."""


def bind(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) TCP sockets for ``host:port``, or ListenError naming it."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ListenError(f"cannot resolve {host}: {exc}") from exc
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(
            (f, k, p, "", a) for f, k, p, _n, a in found
        ):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise ListenError(f"cannot listen on {host}:{port}: {reason}") from exc
    except BaseException:
        for sock in bound:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return bound
