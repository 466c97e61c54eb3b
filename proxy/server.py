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

aiohttp has no public hook for that answer: the handler class is fixed in ``web.Server.__call__``
and the server is built inside ``AppRunner._make_server``. So this module relies on non-public
details, kept here and nowhere else: ``RequestHandler.handle_error``'s signature and
``_request_count``, ``web.Server``'s ``_loop`` and ``_kwargs``, ``AppRunner._make_server``, and
the message both of aiohttp's parsers give a TLS handshake (:data:`TLS_ON_PLAIN_PORT`).
pyproject.toml pins aiohttp to the minor release this was checked against, and
tests/unit/test_server.py and tests/e2e/test_hostile_more.py fail if any of them stops working
(a plain-text answer, or no access-log row).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from proxy.errors import Code, OCIError, error_response
from proxy.listen import bind
from proxy.tls_port import OnPlain, TlsOnlySite

log = logging.getLogger("gatekeeper.server")

OnUnparsed = Callable[[web.BaseRequest, OCIError, str], None]
"""Told of each request refused before it could be parsed: request, answer, request id."""

TLS_ON_PLAIN_PORT = "Received HTTPS traffic on an HTTP port"
"""aiohttp's message (C and Python parser alike) for a request line starting with a TLS record
header: the one refusal that is not an HTTP request."""


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
    """aiohttp's connection handler, answering its own errors with an OCI envelope."""

    __slots__ = ("_on_unparsed",)

    def __init__(self, manager: web.Server, *, on_unparsed: OnUnparsed, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._on_unparsed = on_unparsed

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


class _EnvelopeServer(web.Server):
    """``web.Server`` building the handler above for each connection."""

    def __init__(self, *args: Any, on_unparsed: OnUnparsed, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_unparsed = on_unparsed

    def __call__(self) -> RequestHandler:
        return _EnvelopeRequestHandler(
            self, loop=self._loop, on_unparsed=self._on_unparsed, **self._kwargs
        )


class GatekeeperRunner(web.AppRunner):
    """``AppRunner`` whose server answers parse errors with an envelope and reports them."""

    def __init__(self, app: web.Application, *, on_unparsed: OnUnparsed, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._on_unparsed = on_unparsed

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
            **built._kwargs,
        )


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    on_unparsed: OnUnparsed,
    on_plain_http: OnPlain | None = None,
    shutdown_timeout: float = 30.0,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop cleanly (the access log is drained by the app's
    cleanup, inside ``shutdown_timeout``). The port is bound before the app is set up
    (``proxy.listen``): a busy port ends the start before the database is touched. With TLS,
    plain HTTP sent to the port gets a 400 saying so (``proxy.tls_port``, ``on_plain_http``)."""
    sockets = bind(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = GatekeeperRunner(
        app, on_unparsed=on_unparsed, access_log=None, shutdown_timeout=shutdown_timeout
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
