"""A real S3-compatible server on loopback (moto in server mode), and the registry's ``s3``
storage driver pointed at it with ``redirect`` on, as a team running Distribution at scale has.

Between them sits :class:`StoreGate`, a small relay that can cut the network path from the
gatekeeper to the store while the registry keeps its own: it refuses the presigned reads (their
query carries ``X-Amz-Signature``; the registry's own requests sign a header instead). Every
request passes it on a connection of its own (``Connection: close`` is added), so each
request's head is seen.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.procs import free_port, wait_http
from tests.support.registry import Registry, make_registry

BUCKET = "registry"
PRESIGNED = b"X-Amz-Signature="
_HEAD_LIMIT = 64 * 1024


@dataclass
class Moto:
    """``moto`` serving S3 on a loopback port (its data lives in the process: keep it up)."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_moto(workdir: Path) -> Moto:
    port = free_port()
    log = (workdir / "moto.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/", timeout=60.0)
        created = httpx.put(f"{url}/{BUCKET}", timeout=30)
        created.raise_for_status()
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Moto(url, process)


class _Relay(socketserver.BaseRequestHandler):
    server: StoreGate

    def handle(self) -> None:
        client: socket.socket = self.request
        head = _read_head(client)
        if head is None:
            return
        request_line = head.split(b"\r\n", 1)[0]
        if self.server.refuse_presigned and PRESIGNED in request_line:
            self.server.refused += 1
            _reset(client)
            return
        if PRESIGNED in request_line:
            self.server.presigned += 1
        with socket.create_connection(self.server.target) as upstream:
            upstream.sendall(_close_after(head))
            _pipe(client, upstream)


class StoreGate(socketserver.ThreadingTCPServer):
    """The relay in front of the store; ``refuse_presigned`` cuts the gatekeeper's (and any
    client's) path to it, ``presigned`` and ``refused`` count the presigned reads."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.target = target
        self.refuse_presigned = False
        self.presigned = 0
        self.refused = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def _read_head(sock: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk or len(data) > _HEAD_LIMIT:
            return None
        data += chunk
    return data


def _close_after(head: bytes) -> bytes:
    """The request (head and whatever body bytes came with it) with ``Connection: close``."""
    top, sep, rest = head.partition(b"\r\n\r\n")
    lines = [line for line in top.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + sep + rest


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both sides are done."""

    def copy(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=copy, args=(a, b), daemon=True)
    other.start()
    copy(b, a)
    other.join(60)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a dropped path looks to the client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def make_s3_registry(workdir: Path, endpoint: str) -> Registry:
    """The registry on S3 at ``endpoint``, blob reads redirected to presigned URLs. Debian's
    ``docker-registry`` fails on an ``AWS_CA_BUNDLE`` in its environment; ``Registry.start``
    gives it only ``PATH``."""
    storage = {
        "s3": {
            "region": "us-east-1",
            "bucket": BUCKET,
            "regionendpoint": endpoint,
            "forcepathstyle": True,
            "secure": False,
            "v4auth": True,
            "accesskey": "gatekeeper-tests",
            "secretkey": "not-a-real-secret",
            "rootdirectory": "/registry",
        },
        "redirect": {"disable": False},
        "delete": {"enabled": True},
        "maintenance": {"uploadpurging": {"enabled": False}},
    }
    return make_registry(workdir, {"storage": storage})
