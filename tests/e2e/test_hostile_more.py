"""More hostile input through a real gatekeeper and registry: a flood of upload sessions, a
trickled manifest body, and oversized request headers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import OCI_MANIFEST, digest_of, image_config, image_manifest, push_blob
from tests.support.rawhttp import read_error_answer, send_raw
from tests.support.registry import Registry, make_registry
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

CAP = 100
BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Gatekeeper]]:
    reg = make_registry(tmp_path_factory.mktemp("registry"))
    gk = make_gatekeeper(
        tmp_path_factory.mktemp("gatekeeper"),
        reg.url,
        extra_env={
            "GATEKEEPER_UPLOADS__MAX_SESSIONS_PER_IDENTITY": str(CAP),
            "GATEKEEPER_CLIENT_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        },
    )
    yield reg, gk
    gk.stop()
    reg.stop()


def upstream_sessions(reg: Registry, repo: str) -> int:
    """Upload sessions the registry holds for ``repo`` (one directory each)."""
    uploads = reg.storage_root / "docker/registry/v2/repositories" / repo / "_uploads"
    return len(list(uploads.iterdir())) if uploads.exists() else 0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> Answer:
    writer.write(request)
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {
        k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(head[0].split()[1]), headers, body)


async def flood(port: int, repo: str, attempts: int, connections: int = 50) -> list[Answer]:
    """``attempts`` POSTs over ``connections`` keep-alive connections. A bare client: httpx's
    per-request cost would make the client, not the gatekeeper, the bottleneck."""
    request = (
        f"POST /v2/{repo}/blobs/uploads/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    left = [attempts]
    answers: list[Answer] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left[0] > 0:
                left[0] -= 1
                answer = await _exchange(reader, writer, request)
                answers.append(answer)
                if answer.headers.get("connection", "").lower() == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return answers


def test_ten_thousand_upload_sessions_open_at_most_the_cap(
    site: tuple[Registry, Gatekeeper],
) -> None:
    reg, gk = site
    repo = "flood/app"
    answers = asyncio.run(flood(gk.port, repo, 10_000))
    statuses = Counter(r.status for r in answers)
    assert statuses == {202: CAP, 429: 10_000 - CAP}, statuses
    refused = next(r for r in answers if r.status == 429)
    error = json.loads(refused.body)["errors"][0]
    assert error["code"] == "TOOMANYREQUESTS" and error["detail"] == {"limit": CAP}
    assert "open upload sessions" in error["message"]
    assert upstream_sessions(reg, repo) == CAP
    # One process admits an identity's POSTs one at a time against what it holds: none of the
    # refused ones was sent upstream (not even to open a session and cancel it).
    asked = gk.wait_audit(10_000 - CAP, "action = 'upload.start' AND status = 429", timeout=60)
    assert [r["upstream_status"] for r in asked] == [None] * (10_000 - CAP)
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        assert http.post(f"/v2/{repo}/blobs/uploads/").status_code == 429
        # Cancelling one frees exactly one slot.
        location = next(r.headers["location"] for r in answers if r.status == 202)
        assert http.delete(location).status_code == 204
        again = http.post(f"/v2/{repo}/blobs/uploads/")
        assert again.status_code == 202, again.text
        assert http.post(f"/v2/{repo}/blobs/uploads/").status_code == 429
        # Completing one frees one too.
        data = b"completes a session"
        sep = "&" if "?" in again.headers["Location"] else "?"
        done = http.put(f"{again.headers['Location']}{sep}digest={digest_of(data)}", content=data)
        assert done.status_code == 201, done.text
        last = http.post(f"/v2/{repo}/blobs/uploads/")
        assert last.status_code == 202
    # Another client address is another anonymous identity with its own slots.
    other = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=gk.url, transport=other, timeout=30) as http:
        assert http.post(f"/v2/{repo}/blobs/uploads/").status_code == 202
    held = Counter(_owners(gk))
    assert wait_for(
        lambda: Counter(_owners(gk)) == {"anonymous@127.0.0.1": CAP, "anonymous@127.0.0.2": 1}
    ), held
    refusals = gk.wait_audit(10_000 - CAP, "action = 'upload.start' AND status = 429", timeout=60)
    assert len(refusals) >= 10_000 - CAP
    # Cancelling every session leaves nothing held (and the other tests their slots).
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        for url in [r.headers["location"] for r in answers if r.status == 202] + [
            last.headers["Location"]
        ]:
            assert http.delete(url).status_code in (204, 404)
    # The slot is freed right after the answer is sent, so give the last DELETE a moment.
    assert wait_for(lambda: _owners(gk) == ["anonymous@127.0.0.2"]), _owners(gk)


def _owners(gk: Gatekeeper) -> list[str]:
    return [row["owner"] for row in gk.database.fetch("SELECT owner FROM upload_sessions")]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_idle_upload_sessions_expire(tmp_path: Path) -> None:
    reg = make_registry(tmp_path / "reg")
    gk = make_gatekeeper(
        tmp_path / "gk",
        reg.url,
        extra_env={
            "GATEKEEPER_UPLOADS__MAX_SESSIONS_PER_IDENTITY": "2",
            "GATEKEEPER_UPLOADS__SESSION_IDLE_SECONDS": "3",
        },
    )
    try:
        with httpx.Client(base_url=gk.url, timeout=30) as http:
            first = http.post("/v2/idle/app/blobs/uploads/")
            assert http.post("/v2/idle/app/blobs/uploads/").status_code == 202
            assert http.post("/v2/idle/app/blobs/uploads/").status_code == 429
            # Margins of a second or more either way: the machine may stall for a while.
            time.sleep(2.0)
            # Using a session keeps it alive; the unused one goes idle.
            assert http.get(first.headers["Location"]).status_code == 204
            time.sleep(1.6)
            assert http.post("/v2/idle/app/blobs/uploads/").status_code == 202
            assert http.post("/v2/idle/app/blobs/uploads/").status_code == 429
            # The kept session still works end to end, and completing it frees its slot.
            data = b"kept alive"
            location = first.headers["Location"]
            sep = "&" if "?" in location else "?"
            done = http.put(f"{location}{sep}digest={digest_of(data)}", content=data)
            assert done.status_code == 201, done.text
            assert http.post("/v2/idle/app/blobs/uploads/").status_code == 202
    finally:
        gk.stop()
        reg.stop()


def test_a_session_gone_idle_is_forgotten_even_before_its_row_is_deleted(
    tmp_path: Path,
) -> None:
    """Nothing else happens meanwhile (no reservation, no session ending, so no prune): the
    idle session's row is still in the table, and the session is unknown all the same."""
    reg = make_registry(tmp_path / "reg")
    gk = make_gatekeeper(
        tmp_path / "gk", reg.url, extra_env={"GATEKEEPER_UPLOADS__SESSION_IDLE_SECONDS": "2"}
    )
    try:
        with httpx.Client(base_url=gk.url, timeout=30) as http:
            location = http.post("/v2/idle/gone/blobs/uploads/").headers["Location"]
            time.sleep(2.6)
            assert gk.database.fetch("SELECT id FROM upload_sessions")  # not deleted yet
            late = http.patch(location, content=b"late")
            assert late.status_code == 404, late.text
            assert late.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
        row = gk.wait_audit(1, "action = 'upload.chunk' AND status = 404")[0]
        assert "idle too long" in row["reason"]
    finally:
        gk.stop()
        reg.stop()


def test_a_chunk_streaming_past_the_idle_timeout_keeps_its_session(tmp_path: Path) -> None:
    """Sessions belong to their owner only while the gatekeeper remembers them, and an idle
    one is forgotten; a chunk still streaming is not idle, even when it takes longer than the
    timeout and the owner starts other uploads meanwhile (which forget the owner's idle ones)."""
    reg = make_registry(tmp_path / "reg")
    gk = make_gatekeeper(
        tmp_path / "gk", reg.url, extra_env={"GATEKEEPER_UPLOADS__SESSION_IDLE_SECONDS": "2"}
    )
    data = b"z" * 50

    def trickle() -> Iterator[bytes]:
        for i in range(0, len(data), 10):
            time.sleep(1.0)
            yield data[i : i + 10]
            if i == 30:  # past the idle timeout: another upload forgets idle sessions
                with httpx.Client(base_url=gk.url, timeout=30) as other:
                    assert other.post("/v2/long/other/blobs/uploads/").status_code == 202

    try:
        with httpx.Client(base_url=gk.url, timeout=30) as http:
            location = http.post("/v2/long/app/blobs/uploads/").headers["Location"]
            chunk = http.patch(location, content=trickle())
            assert chunk.status_code == 202, chunk.text
            location = chunk.headers["Location"]
            sep = "&" if "?" in location else "?"
            done = http.put(f"{location}{sep}digest={digest_of(data)}")
            assert done.status_code == 201, done.text
    finally:
        gk.stop()
        reg.stop()


def test_anonymous_addresses_gone_idle_are_forgotten(tmp_path: Path) -> None:
    """Each anonymous client address is an identity with an owner row: once idle, later
    reservations forget them (a batch at a time, at most every 5 s per process, at once while
    batches come back full), so a spray of addresses does not stay."""
    reg = make_registry(tmp_path / "reg")
    gk = make_gatekeeper(
        tmp_path / "gk",
        reg.url,
        extra_env={
            "GATEKEEPER_TRUSTED_PROXIES": '["127.0.0.0/8"]',
            "GATEKEEPER_UPLOADS__SESSION_IDLE_SECONDS": "3",
        },
    )

    def post(address: str) -> None:
        started = http.post("/v2/spray/app/blobs/uploads/", headers={"X-Forwarded-For": address})
        assert started.status_code == 202, started.text

    def owners() -> set[str]:
        return {row["owner"] for row in gk.database.fetch("SELECT owner FROM upload_owners")}

    try:
        with httpx.Client(base_url=gk.url, timeout=30) as http:
            for i in range(150):
                post(f"198.18.{i // 256}.{i % 256}")
            assert len(owners()) > 2
            time.sleep(3.5)  # every one of them idle now
            left = {"anonymous@203.0.113.1", "anonymous@203.0.113.2"}

            def reserve_and_look() -> bool:
                post("203.0.113.1")
                post("203.0.113.2")
                return owners() == left

            # The next prune is at most 5 s away; 150 rows are two batches, the second at once.
            wait_until(reserve_and_look, 12, "the idle addresses to be forgotten", every=1.0)
    finally:
        gk.stop()
        reg.stop()


def test_slowloris_manifest_put_times_out_with_408(site: tuple[Registry, Gatekeeper]) -> None:
    _, gk = site
    head = (
        f"PUT /v2/slow/manifest/manifests/v1 HTTP/1.1\r\nHost: {gk.host}\r\n"
        f"Content-Type: {OCI_MANIFEST}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gk.port), timeout=15) as sock:
        sock.sendall(head + b'{"schemaVersion"')
        answer = read_error_answer(sock)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 8
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["errors"][0]
    assert error["code"] == "MANIFEST_INVALID" and "stalled" in error["message"]
    assert error["detail"] == {"client_body_timeout_seconds": BODY_TIMEOUT}
    rows = gk.wait_audit(1, "repository = 'slow/manifest' AND action = 'manifest.push'")
    assert [r["status"] for r in rows] == [408]
    # A manifest sent at once still goes through.
    config = image_config(layers=0)
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        push_blob(http, "slow/manifest", config)
        put = http.put(
            "/v2/slow/manifest/manifests/v1",
            content=image_manifest(config, []),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, put.text


UNPARSEABLE = [
    # (case, raw request, expected status): none of these reaches a middleware, so the
    # envelope and the access-log row come from proxy/server.py.
    ("64 KiB header", b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 65536 + b"\r\n\r\n", 431),
    (
        "64 KiB header name",
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + b"N" * 65536 + b": v\r\n\r\n",
        431,
    ),
    ("64 KiB path", b"GET /v2/" + b"p" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    (
        "1,000 headers",
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(1000))
        + b"\r\n",
        431,
    ),
    ("NUL in a header", b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("space in a header name", b"GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", 400),
    # A method the parser does not know, as a connection's first request (issue 22, item 12).
    ("lower-case method", b"get /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("unknown method", b"BREW /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("binary noise", b"\x00\x01\x02\x03 noise\r\n\r\n", 400),
]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [(raw, status) for _, raw, status in UNPARSEABLE],
    ids=[case for case, _, _ in UNPARSEABLE],
)
def test_a_request_the_parser_refuses_gets_an_envelope_and_an_access_log_row(
    site: tuple[Registry, Gatekeeper], request_bytes: bytes, status: int
) -> None:
    """aiohttp refuses these before any middleware runs; the client still gets the OCI error
    envelope (not aiohttp's plain text, which quotes the input), the refusal has its access-log
    row, and the proxy keeps serving."""
    _, gk = site
    answer = send_raw(gk.port, request_bytes)
    got, headers, body = answer.status, answer.headers, answer.body
    assert got == status, answer.raw[:300]
    assert headers["content-type"].startswith("application/json"), answer.raw[:300]
    assert int(headers["content-length"]) == len(body)
    (error,) = json.loads(body)["errors"]
    assert error["code"] == "UNSUPPORTED"
    assert error["detail"]["reason"]  # the parser's exception class, never the input
    assert all(run * 10 not in answer.raw for run in (b"b", b"N", b"p"))  # nothing echoed
    (row,) = gk.wait_audit(1, "request_id = :id", {"id": headers["x-request-id"]})
    assert (row["status"], row["action"], row["error_code"]) == (
        status,
        "request.unparsed",
        "UNSUPPORTED",
    )
    assert row["client_addr"] == "127.0.0.1"
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        assert http.get("/v2/").status_code == 200


def test_a_connection_that_does_not_speak_http_gets_an_envelope_and_no_row(
    site: tuple[Registry, Gatekeeper],
) -> None:
    """A TLS handshake on the plain port (skopeo and podman try https first) is not an HTTP
    request: an envelope, no access-log row, and the next request is served. (Any other bytes
    are recorded: see the parser cases above.)"""
    _, gk = site
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64
    unparsed = "action = 'request.unparsed'"
    with httpx.Client(base_url=gk.url, timeout=30) as http:
        before = http.get("/v2/")
        assert gk.wait_audit(1, "request_id = :id", {"id": before.headers["x-request-id"]})
        rows_before = len(gk.audit_rows(unparsed))
        answer = send_raw(gk.port, hello)
        status, headers, body = answer.status, answer.headers, answer.body
        assert status == 400
        assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
        assert "x-request-id" not in headers  # no row to name
        after = http.get("/v2/")
    assert after.status_code == 200
    # Rows are written in order: once the later request's row is there, an earlier one would be.
    assert gk.wait_audit(1, "request_id = :id", {"id": after.headers["x-request-id"]})
    assert len(gk.audit_rows(unparsed)) == rows_before


def test_http_0_9_is_refused_and_http_1_0_served(site: tuple[Registry, Gatekeeper]) -> None:
    """aiohttp accepts a request line without a version as HTTP/0.9; the gatekeeper refuses it
    (with its access-log row, since it did reach the app) and still serves HTTP/1.0."""
    _, gk = site
    answer = send_raw(gk.port, b"GET /v2/\r\nHost: x\r\n\r\n")
    status, headers, body = answer.status, answer.headers, answer.body
    assert status == 400
    (error,) = json.loads(body)["errors"]
    assert (error["code"], error["detail"]) == ("UNSUPPORTED", {"reason": "HTTP/0.9"})
    (row,) = gk.wait_audit(1, "request_id = :id", {"id": headers["x-request-id"]})
    assert (row["status"], row["error_code"]) == (400, "UNSUPPORTED")
    answer = send_raw(gk.port, b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n")
    assert (answer.status, answer.body) == (200, b"{}")
