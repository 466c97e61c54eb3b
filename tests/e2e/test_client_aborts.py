"""A client that hangs up half way through a blob download is a client abort: its access-log
row says 499 with the bytes it was actually sent, and the gatekeeper logs no ERROR (it used to
log a database outage and record the 121 bytes of an error envelope it never sent).

Every path a blob GET can take is covered: streamed from the registry, the kernel's sendfile
from the registry's storage, and that storage path over TLS (read in pieces)."""

from __future__ import annotations

import os
import socket
import ssl
import struct
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper
from tests.support.ocihttp import push_blob
from tests.support.registry import Registry
from tests.support.tlscert import self_signed

pytestmark = pytest.mark.e2e

SIZE = 64 * 1024 * 1024
READ = SIZE // 2
"""What the client reads before it hangs up: half the blob, far more than the socket buffers
of both ends hold, so the server is still sending when the connection goes."""


@pytest.fixture(scope="module", params=["stream", "sendfile", "tls-sendfile"])
def path_gk(
    request: pytest.FixtureRequest,
    registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gatekeeper]:
    workdir = tmp_path_factory.mktemp(f"abort-{request.param}")
    storage = registry.storage_root if request.param != "stream" else None
    tls = self_signed(workdir / "tls") if request.param.startswith("tls") else None
    gk = make_gatekeeper(workdir, registry.url, storage_root=storage, tls=tls)
    yield gk
    gk.stop()


def _client(gk: Gatekeeper) -> httpx.Client:
    verify = gk.verify if isinstance(gk.verify, ssl.SSLContext) else True
    return httpx.Client(base_url=gk.url, verify=verify, timeout=60)


def _connect(gk: Gatekeeper) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", gk.port), timeout=30)
    # An abortive close (RST), like a killed client, rather than an orderly FIN.
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    if gk.url.startswith("https"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context.wrap_socket(raw)
    return raw


def _read_half_and_hang_up(gk: Gatekeeper, path: str) -> tuple[str, int]:
    """GET ``path``, read the headers and :data:`READ` body bytes, close: the request id and
    the body bytes received."""
    sock = _connect(gk)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {gk.host}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        headers = dict(
            line.decode().lower().split(": ", 1) for line in head.split(b"\r\n")[1:] if line
        )
        received = len(body)
        while received < READ:
            chunk = sock.recv(min(1 << 20, READ - received))
            assert chunk, "the server closed first"
            received += len(chunk)
        return headers["x-request-id"], received
    finally:
        sock.close()


def test_a_download_abandoned_half_way_is_a_499_with_the_bytes_sent(path_gk: Gatekeeper) -> None:
    with _client(path_gk) as http:
        digest = push_blob(http, "abort/app", os.urandom(SIZE))
    log_before = path_gk.log_path.stat().st_size
    request_id, received = _read_half_and_hang_up(path_gk, f"/v2/abort/app/blobs/{digest}")
    (row,) = path_gk.wait_audit(1, "request_id = :id", {"id": request_id}, timeout=30)
    assert row["status"] == 499, row
    assert row["action"] == "blob.pull"
    assert row["error_code"] is None and "database" not in (row["reason"] or ""), row
    # What the gatekeeper handed the connection: at least what arrived, not the whole blob.
    assert received <= row["bytes_out"] < SIZE, (received, row["bytes_out"])
    # The socket buffers of both ends hold a few MiB at most, not the other half of the blob.
    assert row["bytes_out"] - received < 24 * 1024 * 1024, (received, row["bytes_out"])
    with path_gk.log_path.open("rb") as log:
        log.seek(log_before)
        written = log.read().decode(errors="replace")
    assert " ERROR " not in written, written[-3000:]
    assert "database" not in written, written[-3000:]
    # And the gatekeeper serves the next pull of it in full.
    with _client(path_gk) as http:
        again = http.get(f"/v2/abort/app/blobs/{digest}")
    assert again.status_code == 200 and len(again.content) == SIZE
