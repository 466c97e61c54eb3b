"""A webhook receiver on loopback for end-to-end tests, and the receiver's side of the
signature scheme, written out independently of the gatekeeper's code."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET = "e2e-webhook-secret-0123456789"
"""The secret the tests' webhooks are configured with."""


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and what it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """An HTTP server in a thread that fails the first attempt of every delivery."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/t0ken"

    def for_subject(self, subject: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.event.get("subject") == subject]

    def wait(self, subject: str, answered: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.for_subject(subject)
            if any(r.answered == answered for r in got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"no delivery for {subject} answered {answered}: {got}")


def start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with receiver.lock:
                delivery = self.headers["X-Gatekeeper-Delivery"]
                seen = any(
                    r.headers["X-Gatekeeper-Delivery"] == delivery for r in receiver.received
                )
                status = 200 if seen else 500
                receiver.received.append(Received(dict(self.headers), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver


def check_signature(request: Received) -> None:
    """The receiver's side of the scheme, written out independently of the gatekeeper's code."""
    timestamp = request.headers["X-Gatekeeper-Timestamp"]
    assert abs(time.time() - int(timestamp)) < 300
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
    expected = "sha256=" + mac.hexdigest()
    assert hmac.compare_digest(request.headers["X-Gatekeeper-Signature"], expected)
