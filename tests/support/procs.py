"""Small helpers for the real processes the tests start: free ports, waiting for readiness."""

from __future__ import annotations

import functools
import socket
import ssl
import time

import httpx


@functools.cache
def default_tls() -> ssl.SSLContext:
    """httpx's default verification context, made once: ``httpx.get`` makes a new one per call
    (it loads the CA bundle, about 25 ms of CPU), which a readiness poll every 50 ms turned
    into a core's worth of work beside the very process it waits for."""
    return httpx.create_ssl_context()


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str, timeout: float = 20.0, ok: tuple[int, ...] = (200, 401), verify: object = True
) -> None:
    """Poll ``url`` until it answers with one of ``ok``; raise with the last error otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    tls = default_tls() if verify is True else verify
    while time.monotonic() < deadline:
        try:
            status = httpx.get(url, timeout=1.0, verify=tls).status_code  # type: ignore[arg-type]
            if status in ok:
                return
            last = f"status {status}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")
