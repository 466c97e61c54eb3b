"""A local OSV mirror over real HTTP, in a thread: the hostile mirror of the advisory tests.

Each path serves one body with an ETag (answering ``If-None-Match`` with 304, as OSV's bucket
does), either at once or dripped one byte at a time, which only a total deadline stops: the
silence between two bytes stays below any read timeout.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Route:
    body: bytes
    etag: str
    drip_seconds: float | None = None
    """Seconds between two bytes; None: the whole body at once."""
    requests: int = 0
    dripping: int = 0
    """Downloads of this route in progress right now."""
    drip_ended: float | None = None
    """``time.monotonic()`` when the last dripped download ended (the client gave up)."""


class OsvMirror:
    """Serves :class:`Route` bodies on 127.0.0.1 until :meth:`close`."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                mirror._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, path: str, body: bytes, *, drip_seconds: float | None = None) -> str:
        """Serve ``body`` at ``path``; its URL."""
        self.routes[path] = Route(body, f'"{len(self.routes)}-{len(body)}"', drip_seconds)
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        route = self.routes.get(handler.path)
        if route is None:
            handler.send_error(404)
            return
        with self._lock:
            route.requests += 1
        if handler.headers.get("If-None-Match") == route.etag:
            handler.send_response(304)
            handler.send_header("ETag", route.etag)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/zip")
        handler.send_header("Content-Length", str(len(route.body)))
        handler.send_header("ETag", route.etag)
        handler.end_headers()
        if route.drip_seconds is None:
            handler.wfile.write(route.body)
            return
        self._drip(handler, route, route.drip_seconds)

    def _drip(self, handler: BaseHTTPRequestHandler, route: Route, seconds: float) -> None:
        with self._lock:
            route.dripping += 1
        try:
            for offset in range(len(route.body)):
                handler.wfile.write(route.body[offset : offset + 1])
                handler.wfile.flush()
                if self._closing.wait(seconds):
                    break
        except OSError:  # the client gave up: what a deadline does
            handler.close_connection = True
        finally:
            with self._lock:
                route.dripping -= 1
                route.drip_ended = time.monotonic()
