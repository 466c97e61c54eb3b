"""Serving the app, with the one answer aiohttp would otherwise give by itself replaced.

aiohttp parses the request line and headers before any application code runs. When it cannot
(a header line over ``max_field_size``, more than ``max_headers`` headers, a malformed request
line, a forbidden byte), ``RequestHandler.handle_error`` answers with a plain-text 400 quoting
up to 100 bytes of the input, and the request never reaches the middlewares: no OCI error
envelope for the client, no access-log row for the security team. An attacker probing with huge
headers, or with a method the parser does not know (``get``, ``FOO``), would be invisible in the
log. Every such request gets the envelope and its row; the one exception is a TLS handshake as a
connection's first bytes (skopeo and podman try https first, on every command): the envelope but
no row, since no HTTP request was made.

aiohttp also has no request-header timeout: a client that sends half a request line and stops
holds its connection until the keep-alive timeout, which does not count while bytes trickle in.
Here a request's line and headers must be complete within
``connections.request_header_timeout_seconds`` of the connection (or, on a kept-alive
connection, of the request's first byte); otherwise the client gets 408 with the envelope, the
request its access-log row (action ``request.timeout``), and the connection is closed. (Bytes
of a next request pipelined while one is being answered are bounded by the keep-alive timeout
instead, ``connections.keepalive_timeout_seconds``.) The
per-address and total connection caps sit in front of the handler (``proxy/connections.py``).

aiohttp has no public hook for any of this: the handler class is fixed in ``web.Server.__call__``
and the server is built inside ``AppRunner._make_server``. So this module relies on non-public
details, kept here and nowhere else: ``RequestHandler.handle_error``'s signature,
``_request_count``, ``_messages``, ``_waiter``, ``_force_close``, ``_close`` and the
``_ErrInfo`` message a parse error becomes, ``web.Server``'s ``_loop`` and ``_kwargs``,
``AppRunner._make_server``, and the message both of aiohttp's parsers give a TLS handshake
(:data:`TLS_ON_PLAIN_PORT`). pyproject.toml pins aiohttp to the minor release this was checked
against, and tests/unit/proxy/test_server.py and tests/e2e/test_hostile_more.py and
tests/e2e/test_hostile_edges.py fail if any of them stops working (a plain-text answer, no
access-log row, a connection that stays open).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from oci.errors import Code, OCIError
from proxy.connections import ConnectionLimits, GuardedProtocol, OnRefused
from proxy.errors import error_response
from proxy.listen import bind
from proxy.tls_port import OnPlain, TlsOnlySite

log = logging.getLogger("gatekeeper.server")

OnUnparsed = Callable[[web.BaseRequest, OCIError, str], None]
"""Told of each request refused before it could be parsed: request, answer, request id."""

TLS_ON_PLAIN_PORT = "Received HTTPS traffic on an HTTP port"
"""aiohttp's message (C and Python parser alike) for a request line starting with a TLS record
header: the one refusal that is not an HTTP request."""


class RequestHeaderTimeout(HttpProcessingError):
    """The request line and headers did not arrive in time (raised by no parser: the handler
    feeds it to aiohttp's error path itself, as a parse error)."""

    code = 408
    message = "request headers timed out"


def is_tls_handshake(exc: BaseException | None) -> bool:
    """The bytes were a TLS ClientHello, not an HTTP request with an odd method."""
    return isinstance(exc, BadHttpMethod) and exc.message == TLS_ON_PLAIN_PORT


def parse_failure(status: int, exc: BaseException | None) -> OCIError:
    """The envelope for an error aiohttp raised outside the application.

    The parser's own message is not passed on: it quotes the offending bytes, which an attacker
    chooses. The exception's class name says what was wrong without echoing anything.
    """
    if isinstance(exc, LineTooLong) or (
        isinstance(exc, HttpProcessingError) and "too many headers" in str(exc).lower()
    ):
        limit = exc.args[1] if isinstance(exc, LineTooLong) and len(exc.args) > 1 else None
        return OCIError(
            Code.HEADERS_TOO_LARGE,
            "the request line or a header is longer than the gatekeeper accepts, or there are "
            "too many headers",
            {"reason": type(exc).__name__, "limit": limit},
        )
    if isinstance(exc, RequestHeaderTimeout):
        return OCIError(
            Code.HEADERS_TIMEOUT,
            "the request line and headers did not arrive in time; the connection is closed",
            {"reason": type(exc).__name__},
        )
    if isinstance(exc, BadHttpMethod) and not is_tls_handshake(exc):
        return OCIError(
            Code.REQUEST_MALFORMED,
            "the request method is not one HTTP defines (methods are upper-case: GET, HEAD, "
            "PUT, POST, PATCH, DELETE)",
            {"reason": type(exc).__name__},
        )
    if isinstance(exc, HttpProcessingError):
        return OCIError(
            Code.REQUEST_MALFORMED,
            "the request is not valid HTTP/1.1",
            {"reason": type(exc).__name__},
        )
    if status == 504:
        return OCIError(Code.GATEWAY_TIMEOUT)
    return OCIError(Code.INTERNAL, "internal error; the gatekeeper's log has the details")


class _EnvelopeRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own errors with an OCI envelope and giving
    up on a request whose headers do not arrive in time."""

    __slots__ = ("_header_handle", "_header_timeout", "_on_unparsed", "awaiting_first")

    def __init__(
        self,
        manager: web.Server,
        *,
        on_unparsed: OnUnparsed,
        header_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._on_unparsed = on_unparsed
        self._header_timeout = header_timeout
        self._header_handle: asyncio.TimerHandle | None = None
        self.awaiting_first = False
        """Accepted, and not one byte received yet (:meth:`GatekeeperRunner.cleanup`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.awaiting_first = True
        self._arm_header_timer()  # the first request's headers are due from the connection

    def data_received(self, data: bytes) -> None:
        self.awaiting_first = False
        # Between requests the handler waits for the next one: its first byte starts the clock.
        idle = self._waiter is not None and not self._waiter.done() and not self._messages
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._cancel_header_timer()
        elif idle and data and self._header_handle is None:
            self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timeout is not None:
            loop = asyncio.get_running_loop()
            self._header_handle = loop.call_later(self._header_timeout, self._headers_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_handle is not None:
            self._header_handle.cancel()
            self._header_handle = None

    def _headers_timed_out(self) -> None:
        """Hand aiohttp's request loop the timeout as if the parser had failed, so it answers
        through :meth:`handle_error` (envelope, access-log row) and closes the connection."""
        self._header_handle = None
        waiter = self._waiter
        if self._force_close or self._close or waiter is None or waiter.done() or self._messages:
            return  # a request is being handled, or the connection is closing anyway
        exc = RequestHeaderTimeout(message=RequestHeaderTimeout.message)
        self._messages.append((_ErrInfo(status=408, exc=exc, message=exc.message), EMPTY_PAYLOAD))
        self._request_count += 1
        waiter.set_result(None)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # Same contract as aiohttp's: the answer already started, the connection is broken.
            raise ConnectionError("response already sent, cannot send an error after it")
        failure = parse_failure(status, exc)
        unparsed = isinstance(exc, HttpProcessingError)
        if unparsed and self._request_count == 1 and is_tls_handshake(exc):
            # A client trying TLS first (skopeo and podman with --tls-verify=false do, on every
            # command). Like aiohttp, not worth a log line at more than debug, nor an access-log
            # row: no HTTP request was made. An unknown or lower-case method, or other bytes
            # that are not a request, are recorded like every other refusal.
            log.debug("a connection from %s began with a TLS handshake", request.remote)
            unparsed = False
        elif isinstance(exc, RequestHeaderTimeout):
            log.warning("request headers from %s did not arrive in time", request.remote)
        elif unparsed:
            # Expected from scanners and attackers: one line, no traceback to flood the log.
            log.warning(
                "refused a request from %s that could not be parsed: %s",
                request.remote,
                type(exc).__name__,
            )
        elif status == 504:
            log.warning("request from %s timed out in its handler", request.remote)
        else:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        response = error_response(failure)
        response.force_close()
        if unparsed:
            # It never reached the access-log middleware, so it is recorded here. Other errors
            # did pass through the middleware, which already wrote their row.
            request_id = uuid.uuid4().hex
            response.headers["X-Request-Id"] = request_id
            self._on_unparsed(request, failure, request_id)
        return response


@dataclass(frozen=True)
class Guard:
    """What stands between a connection and the app: the connection caps (and whom to tell
    of a refusal), and the request-header timeout."""

    limits: ConnectionLimits | None = None
    on_refused: OnRefused | None = None
    header_timeout: float | None = None


class _EnvelopeServer(web.Server):
    """``web.Server`` building the handler above for each connection, behind the caps."""

    def __init__(self, *args: Any, on_unparsed: OnUnparsed, guard: Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_unparsed = on_unparsed
        self._guard = guard

    def _handler(self) -> RequestHandler:
        return _EnvelopeRequestHandler(
            self,
            loop=self._loop,
            on_unparsed=self._on_unparsed,
            header_timeout=self._guard.header_timeout,
            **self._kwargs,
        )

    # The protocol factory may build another protocol than aiohttp's: it only has to be one.
    def __call__(self) -> asyncio.Protocol:  # type: ignore[override]
        limits, on_refused = self._guard.limits, self._guard.on_refused
        if limits is None or on_refused is None:
            return self._handler()
        return GuardedProtocol(self._handler, limits, on_refused)


FIRST_REQUEST_GRACE = 2.0
"""Seconds a stopping server waits for the first request of connections it just accepted."""


class GatekeeperRunner(web.AppRunner):
    """``AppRunner`` whose server answers parse errors with an envelope and reports them, and
    holds connections to ``guard``."""

    def __init__(
        self,
        app: web.Application,
        *,
        on_unparsed: OnUnparsed,
        guard: Guard | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._on_unparsed = on_unparsed
        self._guard = guard or Guard()

    async def cleanup(self) -> None:
        """Stop accepting, then give a connection accepted just before the stop its first
        request before closing what is idle (at most :data:`FIRST_REQUEST_GRACE` seconds).

        aiohttp closes every connection with no request in progress right after its sites
        stop. A client whose connection the kernel had accepted, but whose request bytes had
        not been read yet, was then cut off with no answer ("server disconnected without
        sending a response"): under ``serve --workers``, each serving process stopped for a
        restart dropped such a request. The others keep accepting meanwhile."""
        for site in list(self.sites):
            await site.stop()
        server = self.server
        if server is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + FIRST_REQUEST_GRACE
            while loop.time() < deadline and any(
                getattr(handler, "awaiting_first", False) for handler in server.connections
            ):
                await asyncio.sleep(0.02)
        await super().cleanup()

    async def _make_server(self) -> web.Server:
        # The app's own server carries the handler, request factory and handler arguments
        # (timeouts, parser limits) the app was configured with; only its class changes.
        built = await super()._make_server()
        return _EnvelopeServer(
            built.request_handler,
            request_factory=built.request_factory,
            handler_cancellation=built.handler_cancellation,
            loop=asyncio.get_running_loop(),
            on_unparsed=self._on_unparsed,
            guard=self._guard,
            **built._kwargs,
        )


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    sockets: list[socket.socket] | None = None,
    ssl_context: ssl.SSLContext | None,
    on_unparsed: OnUnparsed,
    guard: Guard | None = None,
    keepalive_timeout: float = 75.0,
    on_plain_http: OnPlain | None = None,
    shutdown_timeout: float = 30.0,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly (the access log is drained by the app's
    cleanup, inside ``shutdown_timeout``). The port is bound before the app is set up
    (``proxy.listen``): a busy port ends the start before the database is touched. With TLS,
    plain HTTP sent to the port gets a 400 saying so (``proxy.tls_port``, ``on_plain_http``).
    ``sockets``: already bound by a supervising parent (``proxy.workers``), shared with the
    other serving processes."""
    sockets = sockets if sockets is not None else bind(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = GatekeeperRunner(
        app,
        on_unparsed=on_unparsed,
        guard=guard,
        access_log=None,
        keepalive_timeout=keepalive_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    try:
        await runner.setup()  # inside: a start-up that fails half way still cleans up
        for sock in sockets:
            site: web.BaseSite = (
                web.SockSite(runner, sock)
                if ssl_context is None
                else TlsOnlySite(
                    runner,
                    sock,
                    ssl_context=ssl_context,
                    on_plain=on_plain_http or (lambda peer, failure, request_id: None),
                )
            )
            await site.start()
        await stop.wait()
    finally:
        await runner.cleanup()
        for sock in sockets:
            sock.close()
