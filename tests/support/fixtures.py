"""Building blocks the end-to-end fixtures share: a gatekeeper that is stopped however the
block ends, an upstream that only counts who connects, and a request sent byte for byte.

Test modules keep their own ``@pytest.fixture`` functions (each chooses its settings and scope);
what they have in common lives here instead of being copied from module to module.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.gatekeeper import Gatekeeper, make_gatekeeper


@contextmanager
def running_gatekeeper(
    workdir: Path, upstream_url: str, env: dict[str, str] | None = None
) -> Iterator[Gatekeeper]:
    """A started gatekeeper with ``env`` on top of the test defaults, stopped on exit."""
    gatekeeper = make_gatekeeper(workdir, upstream_url, extra_env=env)
    try:
        yield gatekeeper
    finally:
        gatekeeper.stop()


class Tripwire:
    """A TCP listener standing in for an upstream: it only counts who connects (a request the
    gatekeeper refuses must never reach it)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@contextmanager
def tripwire_gatekeeper(workdir: Path) -> Iterator[tuple[Gatekeeper, Tripwire]]:
    """A gatekeeper whose upstream is a :class:`Tripwire`."""
    wire = Tripwire()
    try:
        with running_gatekeeper(workdir, wire.url) as gatekeeper:
            yield gatekeeper, wire
    finally:
        wire.close()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes


def raw_request(port: int, method: str, path: str, body: bytes | None = None) -> RawResponse:
    """Send ``path`` byte for byte (httpx would normalise dot segments and escapes away)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()
