"""How many client connections the gatekeeper holds, per address and in all.

Every open connection costs a file descriptor and memory, whether or not its client ever
finishes a request; one address holding hundreds of half-sent requests (slowloris) would
otherwise starve everyone else. So a connection beyond ``connections.max_per_address`` from one
address, or beyond ``connections.max_total`` in all, is answered at once with the OCI error
envelope (429 ``TOOMANYREQUESTS`` or 503 ``UNAVAILABLE``, with ``Retry-After``) and closed,
without a request being read. It gets an access-log row (action ``connection.refused``) and is
counted in ``/metrics``; the connections already open are served as before. Connections from
``trusted_proxies`` (a load balancer carries many clients) count only against the total.

The refusal is written as soon as the connection is accepted, so the client may still be
sending its request: the connection is closed for writing and its input read and dropped for
a moment (a "lingering close") so the answer is not lost to a reset.

How long a client may take to send its headers is the connection handler's business
(``proxy/server.py``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web

from config.settings import ConnectionSettings
from oci.errors import Code, OCIError
from proxy.clientaddr import Network, trusted
from proxy.errors import envelope

log = logging.getLogger("gatekeeper.connections")

LINGER_SECONDS = 2.0
"""How long a refused connection's input is drained before it is closed."""

OnRefused = Callable[[str | None, OCIError, str], None]
"""Told of each refused connection: client address, answer, request id (for its row)."""


@dataclass(frozen=True)
class Refusal:
    """Why one more connection may not open."""

    limit: str
    """``per-address`` or ``total``, the metric's label."""
    failure: OCIError


class ConnectionLimits:
    """Open client connections, per address and in all, against the configured caps."""

    def __init__(self, settings: ConnectionSettings, trusted_proxies: Sequence[Network]) -> None:
        self.settings = settings
        self._trusted = list(trusted_proxies)
        self._by_address: Counter[str] = Counter()
        self.open = 0

    def admit(self, address: str | None) -> Refusal | None:
        """Count one more connection from ``address``, or say why it may not open."""
        if self.open >= self.settings.max_total:
            return Refusal(
                "total",
                OCIError(
                    Code.CONNECTIONS_EXHAUSTED,
                    f"the gatekeeper holds {self.settings.max_total} connections, its limit; "
                    "try again shortly",
                    {"limit": self.settings.max_total},
                    headers={"Retry-After": "1"},
                ),
            )
        counted = self._per_address(address)
        if counted is not None and self._by_address[counted] >= self.settings.max_per_address:
            return Refusal(
                "per-address",
                OCIError(
                    Code.TOO_MANY_REQUESTS,
                    f"this address holds {self.settings.max_per_address} connections, the "
                    "limit per address; reuse them or close some",
                    {"limit": self.settings.max_per_address},
                    headers={"Retry-After": "1"},
                ),
            )
        self.open += 1
        if counted is not None:
            self._by_address[counted] += 1
        return None

    def release(self, address: str | None) -> None:
        """A connection :meth:`admit` counted has closed."""
        self.open -= 1
        counted = self._per_address(address)
        if counted is not None:
            self._by_address[counted] -= 1
            if self._by_address[counted] <= 0:
                del self._by_address[counted]

    def _per_address(self, address: str | None) -> str | None:
        if address is None or trusted(address, self._trusted):
            return None
        return address


CONNECTIONS: web.AppKey[ConnectionLimits] = web.AppKey("connections", ConnectionLimits)
"""The app's connection counts: the server admits connections against them, ``/metrics``
reports them."""


def refusal_bytes(failure: OCIError, request_id: str) -> bytes:
    """A whole HTTP/1.1 answer carrying ``failure``'s envelope, for a connection whose request
    is never read."""
    body = envelope([failure])
    status = failure.code.status
    headers = {
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Connection": "close",
        "Docker-Distribution-API-Version": "registry/2.0",
        "X-Request-Id": request_id,
        **failure.headers,
    }
    head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


class GuardedProtocol(asyncio.Protocol):
    """One client connection: handed to aiohttp's handler when the limits admit it, else
    answered with the refusal and closed."""

    def __init__(
        self,
        make_handler: Callable[[], asyncio.Protocol],
        limits: ConnectionLimits,
        on_refused: OnRefused,
    ) -> None:
        self._make_handler = make_handler
        self._limits = limits
        self._on_refused = on_refused
        self._inner: asyncio.Protocol | None = None
        self._address: str | None = None
        self._transport: asyncio.Transport | None = None
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else None
        refusal = self._limits.admit(self._address)
        if refusal is None:
            self._inner = self._make_handler()
            self._inner.connection_made(transport)
            return
        self._transport = transport
        request_id = uuid.uuid4().hex
        transport.write(refusal_bytes(refusal.failure, request_id))
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
        log.warning(
            "refused a connection from %s: %s connection limit reached",
            self._address,
            refusal.limit,
        )
        self._on_refused(self._address, refusal.failure, request_id)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        if self._transport is not None:
            self._transport.close()  # the client has read our answer and is done
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._limits.release(self._address)
            self._inner.connection_lost(exc)
        elif self._linger is not None:
            self._linger.cancel()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def limit_label(failure: OCIError) -> str:
    """The metric label of a refused connection's answer."""
    return "total" if failure.code is Code.CONNECTIONS_EXHAUSTED else "per-address"
