"""Raw bytes over a socket, for requests no HTTP client library will send (oversized or
malformed request lines and headers, TLS handshakes on a plain port)."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class RawAnswer:
    """What came back, read until the server closed the connection (or went quiet)."""

    raw: bytes

    @property
    def head(self) -> bytes:
        return self.raw.partition(b"\r\n\r\n")[0]

    @property
    def body(self) -> bytes:
        return self.raw.partition(b"\r\n\r\n")[2]

    @property
    def status(self) -> int:
        return int(self.head.split(b"\r\n", 1)[0].split()[1])

    @property
    def headers(self) -> dict[str, str]:
        """Header names lower-cased (one value each: enough for error answers)."""
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}


def send_raw(
    port: int, request: bytes, host: str = "127.0.0.1", timeout: float = 10.0
) -> RawAnswer:
    """Send ``request`` as is; the server may answer and close before all of it is sent."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        chunks = []
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return RawAnswer(b"".join(chunks))


def read_error_answer(sock: socket.socket) -> bytes:
    """Read an answer whose body is a JSON error envelope, until that body is complete (the
    server may keep the connection open, so end of stream cannot be waited for)."""
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer
