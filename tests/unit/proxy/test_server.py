"""The server answers what aiohttp refuses by itself with an OCI envelope (proxy/server.py).

These run a real aiohttp server on loopback with a small app, so they also catch an aiohttp
upgrade that changes the private details the runner relies on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, InvalidHeader, LineTooLong

from config.settings import ConnectionSettings
from oci.errors import Code, OCIError
from proxy.connections import ConnectionLimits
from proxy.errors import Handler
from proxy.server import (
    TLS_ON_PLAIN_PORT,
    GatekeeperRunner,
    Guard,
    is_tls_handshake,
    parse_failure,
)


@dataclass
class Refusals:
    seen: list[tuple[str, int, str]] = field(default_factory=list)

    def __call__(self, request: web.BaseRequest, failure: OCIError, request_id: str) -> None:
        self.seen.append((request.remote or "", failure.code.status, request_id))


@dataclass
class Site:
    port: int
    refusals: Refusals
    refused: list[tuple[str | None, int]] = field(default_factory=list)
    """Connections the caps refused: (address, status)."""
    limits: ConnectionLimits | None = None


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@web.middleware
async def _explode_outside_the_error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    if request.path == "/explode":
        raise RuntimeError("a bug in an outer middleware")
    return await handler(request)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    # handler_args reach the parser: a small field limit proves the runner kept them.
    app = web.Application(
        middlewares=[_explode_outside_the_error_middleware], handler_args={"max_field_size": 512}
    )
    app.router.add_get("/v2/", _ok)
    refusals = Refusals()
    runner = GatekeeperRunner(app, on_unparsed=refusals, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Site(port, refusals)
    finally:
        await runner.cleanup()


async def _exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # to EOF: the connection is closed
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_a_header_over_the_configured_limit_gets_a_431_envelope_and_is_reported(
    site: Site,
) -> None:
    status, headers, body = await _exchange(
        site.port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"s3cr3t" * 200 + b"\r\n\r\n"
    )
    assert status == 431
    assert headers["content-type"].startswith("application/json")
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    (error,) = json.loads(body)["errors"]
    assert error["code"] == "UNSUPPORTED"
    assert error["detail"] == {"reason": "LineTooLong", "limit": 512}
    assert b"s3cr3t" not in body
    assert site.refusals.seen == [("127.0.0.1", 431, headers["x-request-id"])]


async def test_a_header_under_the_limit_is_served(site: Site) -> None:
    status, _, body = await _exchange(
        site.port,
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Small: "
        + b"a" * 400
        + b"\r\n\r\n",
    )
    assert (status, json.loads(body)) == (200, {"ok": True})
    assert site.refusals.seen == []


async def test_a_forbidden_byte_in_a_header_gets_a_400_envelope_and_is_reported(
    site: Site,
) -> None:
    status, _, body = await _exchange(
        site.port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n"
    )
    assert status == 400
    (error,) = json.loads(body)["errors"]
    assert (error["code"], error["detail"]["reason"]) == ("UNSUPPORTED", "BadHttpMessage")
    assert [s for _, s, _ in site.refusals.seen] == [400]


async def test_a_connection_that_does_not_speak_http_gets_an_envelope_but_is_not_reported(
    site: Site,
) -> None:
    """A TLS handshake on the plain port (clients probing https first) is not an HTTP request."""
    status, _, body = await _exchange(site.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert status == 400
    (error,) = json.loads(body)["errors"]
    assert (error["code"], error["detail"]["reason"]) == ("UNSUPPORTED", "BadHttpMethod")
    assert site.refusals.seen == []


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"get /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"FOO /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G{T /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x01\x02 not a request\r\n\r\n",
    ],
    ids=["lower-case", "unknown", "not-a-token", "binary"],
)
async def test_a_bad_method_as_a_connections_first_request_is_reported(
    site: Site, request_bytes: bytes
) -> None:
    """Only a TLS handshake goes unrecorded; a method aiohttp does not know is a request."""
    status, headers, body = await _exchange(site.port, request_bytes)
    assert status == 400
    (error,) = json.loads(body)["errors"]
    assert (error["code"], error["detail"]["reason"]) == ("UNSUPPORTED", "BadHttpMethod")
    assert "method" in error["message"] and b"FOO" not in body and b"get" not in body
    assert site.refusals.seen == [("127.0.0.1", 400, headers["x-request-id"])]


def test_only_the_tls_message_counts_as_a_handshake() -> None:
    assert is_tls_handshake(BadHttpMethod(error=TLS_ON_PLAIN_PORT))
    assert is_tls_handshake(BadHttpMethod("\x16\x03\x01\x02"))  # the Python parser's way
    assert not is_tls_handshake(BadHttpMethod("get"))
    assert not is_tls_handshake(BadHttpMessage("x"))
    assert "method" in parse_failure(400, BadHttpMethod("get")).message
    assert "method" not in parse_failure(400, BadHttpMethod(error=TLS_ON_PLAIN_PORT)).message


async def test_a_bad_method_after_a_good_request_on_one_connection_is_reported(
    site: Site,
) -> None:
    """Only a connection's first bytes may be a non-HTTP probe; later garbage is recorded."""
    reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
    try:
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(b"G{T /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        second = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    assert second.startswith(b"HTTP/1.0 400 ") and b'"reason":"BadHttpMethod"' in second
    assert [s for _, s, _ in site.refusals.seen] == [400]


async def test_an_error_that_passed_through_the_app_is_an_envelope_but_not_reported_twice(
    site: Site,
) -> None:
    """The access-log middleware already wrote a row for a request that reached the app."""
    status, _, body = await _exchange(site.port, b"GET /explode HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 500
    (error,) = json.loads(body)["errors"]
    assert error["code"] == "UNKNOWN"
    assert "a bug" not in body.decode()
    assert site.refusals.seen == []


@pytest.mark.parametrize(
    ("status", "exc", "code"),
    [
        (400, LineTooLong(b"xxx...", 8190), Code.HEADERS_TOO_LARGE),
        (400, BadHttpMessage("Too many headers received"), Code.HEADERS_TOO_LARGE),
        (400, InvalidHeader(b"X-\x00"), Code.REQUEST_MALFORMED),
        (504, None, Code.GATEWAY_TIMEOUT),
        (500, RuntimeError("boom"), Code.INTERNAL),
    ],
)
def test_parse_failures_map_to_one_code_each(
    status: int, exc: BaseException | None, code: Code
) -> None:
    failure = parse_failure(status, exc)
    assert failure.code is code
    assert "xxx" not in failure.message and "boom" not in failure.message


@pytest.fixture
async def guarded_site() -> AsyncIterator[Site]:
    """The same app behind a short request-header timeout and tight connection caps."""
    app = web.Application()
    app.router.add_get("/v2/", _ok)
    refusals = Refusals()
    refused: list[tuple[str | None, int]] = []
    limits = ConnectionLimits(ConnectionSettings(max_per_address=2, max_total=10), [])
    guard = Guard(
        limits=limits,
        on_refused=lambda address, failure, _: refused.append((address, failure.code.status)),
        header_timeout=0.3,
    )
    runner = GatekeeperRunner(app, on_unparsed=refusals, guard=guard, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Site(runner.addresses[0][1], refusals, refused, limits)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "partial",
    [b"", b"GET /v2/ HT", b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"],
    ids=["nothing", "half-a-line", "headers-unfinished"],
)
async def test_headers_that_do_not_arrive_in_time_get_a_408_envelope(
    guarded_site: Site, partial: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded_site.port)
    try:
        writer.write(partial)
        answer = await asyncio.wait_for(reader.read(), 5)  # to EOF: closed after the answer
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"408", answer
    (error,) = json.loads(body)["errors"]
    assert (error["code"], error["detail"]) == ("UNSUPPORTED", {"reason": "RequestHeaderTimeout"})
    assert [status for _, status, _ in guarded_site.refusals.seen] == [408]


async def test_a_request_in_time_is_served_and_the_caps_refuse_the_next_connection(
    guarded_site: Site,
) -> None:
    status, _, body = await _exchange(
        guarded_site.port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert (status, json.loads(body)) == (200, {"ok": True})
    held = [await asyncio.open_connection("127.0.0.1", guarded_site.port) for _ in range(2)]
    await asyncio.sleep(0.05)
    assert guarded_site.limits is not None and guarded_site.limits.open == 2
    status, _, body = await _exchange(guarded_site.port, b"GET /v2/ HTTP/1.1\r\n\r\n")
    assert status == 429 and json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert guarded_site.refused == [("127.0.0.1", 429)]
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.05)
    assert guarded_site.limits.open == 0
    assert guarded_site.refusals.seen == []


async def test_a_connection_accepted_just_before_a_stop_still_gets_its_answer() -> None:
    """A serving process stopped (a restart under ``serve --workers``) must not cut off a
    client whose connection it had accepted but whose request it had not read yet."""
    app = web.Application()
    app.router.add_get("/v2/", _ok)
    runner = GatekeeperRunner(app, on_unparsed=Refusals(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.1)  # accepted, and not one byte sent yet
    stopping = asyncio.create_task(runner.cleanup())
    await asyncio.sleep(0.3)  # the server stopped accepting; the request comes now
    assert not stopping.done()
    writer.write(b"GET /v2/ HTTP/1.1\r\nHost: gatekeeper\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await stopping
    assert answer.startswith(b"HTTP/1.1 200"), answer
    with pytest.raises(OSError):  # and nothing new is accepted
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_connection_that_sends_nothing_delays_a_stop_by_the_grace_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("proxy.server.FIRST_REQUEST_GRACE", 0.5)
    runner = GatekeeperRunner(web.Application(), on_unparsed=Refusals(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    _, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
    await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(runner.cleanup(), 10)
    assert 0.4 < loop.time() - started < 5
    writer.close()
