"""The TLS port: TLS for clients that speak it, a readable 400 for plain HTTP sent to it.

A TLS listener of asyncio starts the handshake on the first bytes: a plain-HTTP request
(``curl http://`` on the https port, a client configured for an insecure registry) fails the
handshake and the connection is closed without a word, which tells its user nothing. So each
connection is looked at first: the server reads nothing until the first byte has arrived, and
peeks at it (``MSG_PEEK``, so the kernel keeps it). A TLS record (``0x16``, a handshake) starts
TLS on the untouched connection, set up as asyncio's TLS listener does (``asyncio.sslproto``,
not public: checked by tests/e2e/test_tls.py), and the gatekeeper's HTTP handler runs over it as
it would on a TLS listener; anything else is read as plain HTTP and answered 400
with the OCI error envelope saying to use ``https://``, then closed, and recorded like every
request the gatekeeper refuses before the application sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import uuid
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

from aiohttp import web

from oci.errors import Code, OCIError
from proxy.errors import envelope

log = logging.getLogger("gatekeeper.server")

TLS_HANDSHAKE = 0x16
"""The content type of a TLS record carrying a handshake: a ClientHello starts with it."""
FIRST_BYTE_SECONDS = 60.0
"""How long a new connection may stay silent before it is closed."""
HANDSHAKE_SECONDS = 60
PLAIN_HEAD_LIMIT = 8192
"""Bytes of a plain-HTTP request read (to its blank line) before it is answered anyway."""

OnPlain = Callable[[str | None, OCIError, str], None]
"""Told of each plain-HTTP request on the TLS port: peer address, answer, request id."""


def plain_http_refusal() -> OCIError:
    return OCIError(
        Code.REQUEST_MALFORMED,
        "this port of the gatekeeper speaks HTTPS only, and the request came as plain HTTP: "
        "use https:// (for podman and skopeo: drop --tls-verify=false, or trust the "
        "gatekeeper's CA)",
        {"reason": "plain HTTP on the TLS port"},
    )


def _answer(failure: OCIError, request_id: str) -> bytes:
    body = envelope([failure])
    head = (
        f"HTTP/1.1 {failure.code.status} Bad Request\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Docker-Distribution-API-Version: registry/2.0\r\n"
        f"X-Request-Id: {request_id}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class TlsOnlySite(web.BaseSite):
    """``SockSite`` for a TLS port (see the module docstring)."""

    __slots__ = ("_name", "_on_plain", "_sniffing", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        ssl_context: ssl.SSLContext,
        on_plain: OnPlain,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self._name = f"https://{host}:{port}"
        self._on_plain = on_plain
        self._sniffing: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, sock=self._sock, backlog=self._backlog
        )

    async def stop(self) -> None:
        for task in self._sniffing:
            task.cancel()
        await super().stop()

    def _protocol(self) -> asyncio.Protocol:
        return _Sniffer(self)

    def sniff(self, sniffer: _Sniffer) -> None:
        task = asyncio.create_task(sniffer.route(), name="tls-port-sniff")
        self._sniffing.add(task)
        task.add_done_callback(self._sniffing.discard)

    def handler(self) -> asyncio.BaseProtocol:
        """The gatekeeper's own HTTP protocol for one connection."""
        server = self._runner.server
        assert server is not None
        return server()

    @property
    def context(self) -> ssl.SSLContext:
        assert self._ssl_context is not None
        return self._ssl_context

    def plain(self, peer: str | None, request_id: str) -> OCIError:
        failure = plain_http_refusal()
        log.warning("plain HTTP from %s on the TLS port: answered 400", peer)
        self._on_plain(peer, failure, request_id)
        return failure


class _Sniffer(asyncio.Protocol):
    """A connection before anyone has read from it."""

    def __init__(self, site: TlsOnlySite) -> None:
        self._site = site
        self._transport: asyncio.Transport | None = None
        self._plain: bytearray | None = None
        self._answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.pause_reading()  # before the loop reads a byte: the peek needs them there
        self._site.sniff(self)

    async def route(self) -> None:
        transport = self._transport
        assert transport is not None
        try:
            first = await _peek(transport)
        except (OSError, TimeoutError):
            transport.abort()
            return
        if not first:
            transport.close()
        elif first[0] == TLS_HANDSHAKE:
            self._start_tls(transport)
        else:
            self._plain = bytearray()
            transport.resume_reading()
            asyncio.get_running_loop().call_later(FIRST_BYTE_SECONDS, self._refuse)

    def _start_tls(self, transport: asyncio.Transport) -> None:
        """TLS over the untouched connection, as asyncio's own TLS listener sets it up
        (``BaseSelectorEventLoop._make_ssl_transport``): the handler is told of the connection
        when the handshake is done, before any request byte. ``loop.start_tls`` would not do:
        it leaves ``connection_made`` to its caller, after data may already have arrived."""
        loop = asyncio.get_running_loop()
        handshake: asyncio.Future[None] = loop.create_future()
        handshake.add_done_callback(_handshake_done)
        tls = sslproto.SSLProtocol(
            loop,
            self._site.handler(),
            self._site.context,
            handshake,
            server_side=True,
            ssl_handshake_timeout=HANDSHAKE_SECONDS,
        )
        transport.set_protocol(tls)
        tls.connection_made(transport)
        transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._plain is None:
            return
        self._plain += data
        if b"\r\n\r\n" in self._plain or len(self._plain) >= PLAIN_HEAD_LIMIT:
            self._refuse()

    def eof_received(self) -> bool | None:
        self._refuse()
        return None

    def _refuse(self) -> None:
        transport = self._transport
        if self._answered or transport is None or transport.is_closing():
            return
        self._answered = True
        request_id = uuid.uuid4().hex
        peer = transport.get_extra_info("peername")
        failure = self._site.plain(str(peer[0]) if peer else None, request_id)
        transport.write(_answer(failure, request_id))
        transport.close()  # after the answer is written

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


def _handshake_done(handshake: asyncio.Future[None]) -> None:
    """A failed handshake (a scanner, a client that does not trust the certificate) has
    already closed its connection; it is worth a debug line, not an unretrieved error."""
    if not handshake.cancelled() and handshake.exception() is not None:
        log.debug("TLS handshake failed: %r", handshake.exception())


async def _peek(transport: asyncio.Transport) -> bytes:
    """The connection's first byte, left in the kernel: waited for on a duplicate of the
    socket's descriptor (the transport's own one is the transport's)."""
    loop = asyncio.get_running_loop()
    sock: Any = transport.get_extra_info("socket")
    raw = socket.socket(fileno=os.dup(sock.fileno()))
    try:
        raw.setblocking(False)
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(raw.fileno(), readable)
        try:
            async with asyncio.timeout(FIRST_BYTE_SECONDS):
                await ready
        finally:
            loop.remove_reader(raw.fileno())
        return raw.recv(1, socket.MSG_PEEK)
    finally:
        with contextlib.suppress(OSError):
            raw.close()
