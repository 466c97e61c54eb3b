"""A wiretap between the gatekeeper and the registry: a loopback TCP relay that keeps a copy of
every byte, so tests can see exactly what the gatekeeper sent upstream (which credentials, how
many tries) without changing a byte of the conversation.

The registry builds absolute ``Location`` URLs from the ``Host`` it is sent, which is the tap's
own address; the gatekeeper, configured with the tap as its upstream, rewrites them as usual.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote

_REQUEST_RE = re.compile(
    rb"(GET|HEAD|POST|PUT|PATCH|DELETE) (/v2/\S*) HTTP/1\.1\r\n(.*?)\r\n\r\n", re.DOTALL
)
_STATUS_RE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
_AUTHORIZATION_RE = re.compile(rb"^authorization: *(.*)$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Exchange:
    """One request the gatekeeper sent upstream, paired with the status the registry answered."""

    method: str
    target: str
    """Path and query as sent."""
    authorization: str | None
    """The ``Authorization`` header the gatekeeper sent, if any."""
    status: int | None
    """None if the registry never answered (the connection was cut)."""


@dataclass
class _Connection:
    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)


class Tap:
    """Relay ``127.0.0.1:<port>`` to ``target_port``, recording both directions per connection."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._connections: list[_Connection] = []
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self._target_port))
            except OSError:
                return
            conn = _Connection()
            with self._lock:
                self._connections.append(conn)
                self._sockets += [client, upstream]
            for src, dst, copy in (
                (client, upstream, conn.sent),
                (upstream, client, conn.received),
            ):
                threading.Thread(target=self._pump, args=(src, dst, copy), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, copy: bytearray) -> None:
        try:
            while chunk := src.recv(65536):
                with self._lock:
                    copy.extend(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def sent(self) -> bytes:
        """Everything the gatekeeper sent upstream, all connections together."""
        with self._lock:
            return b"".join(bytes(conn.sent) for conn in self._connections)

    def exchanges(self) -> list[Exchange]:
        """Requests in order per connection, connections in the order they were opened.

        The gatekeeper's client does not pipeline, so the n-th status line on a connection
        answers its n-th request. (Random blob bytes could in theory mimic a request or status
        line; at the sizes these tests use the odds are nil.)
        """
        with self._lock:
            snapshot = [(bytes(c.sent), bytes(c.received)) for c in self._connections]
        found: list[Exchange] = []
        for sent, received in snapshot:
            statuses = [int(m.group(1)) for m in _STATUS_RE.finditer(received)]
            for index, match in enumerate(_REQUEST_RE.finditer(sent)):
                auth = _AUTHORIZATION_RE.search(match.group(3))
                found.append(
                    Exchange(
                        method=match.group(1).decode(),
                        target=match.group(2).decode(),
                        authorization=auth.group(1).decode().strip() if auth else None,
                        status=statuses[index] if index < len(statuses) else None,
                    )
                )
        return found

    def clear(self) -> None:
        """Forget what was recorded so far (open connections keep being recorded)."""
        with self._lock:
            for conn in self._connections:
                conn.sent.clear()
                conn.received.clear()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()


def layer_reads(tap: Tap, digest: str) -> list[str]:
    """Upstream GETs of one blob (the gatekeeper percent-encodes the digest's colon)."""
    targets = [unquote(e.target) for e in tap.exchanges() if e.method == "GET"]
    return [t for t in targets if t.endswith(f"/blobs/{digest}")]
