"""A public registry and a pull-through cache of it, as operators run Docker Hub behind the
gatekeeper, with real ``docker-registry`` processes:

- ``public`` plays the public registry (Docker Hub): tests push images into it directly;
- a :class:`RemoteFront` stands before it, as the internet does: it can go down (connections
  refused) or rate-limit (429 ``TOOMANYREQUESTS`` on everything but ``/v2/``, as Docker Hub's
  pull limit does), and comes back;
- ``cache`` is a registry in proxy mode (``proxy: remoteurl:`` the front), the gatekeeper's
  upstream.

Images are built here from files given as bytes, one gzip'd tar layer each, so a test says
exactly what an image holds (a planted key, a vulnerable package).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.support.ocihttp import OCI_MANIFEST, created, push_image
from tests.support.procs import free_port
from tests.support.registry import Registry, make_registry

RATE_LIMITED = json.dumps(
    {"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit."}]}
).encode()
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host"}


class RemoteFront:
    """A loopback relay to the public registry that can refuse connections or answer 429."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.rate_limited = False
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self.come_back()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def go_down(self) -> None:
        """Stop listening: connections are refused, as to a remote that is down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def come_back(self) -> None:
        if self._server is not None:
            return
        front = self

        class Relay(_Relay):
            owner = front

        self._server = _QuietServer(("127.0.0.1", self.port), Relay)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        self.go_down()
        try:
            yield
        finally:
            self.come_back()

    @contextlib.contextmanager
    def rate_limiting(self) -> Iterator[None]:
        self.rate_limited = True
        try:
            yield
        finally:
            self.rate_limited = False


RETRY_AFTER = 1
"""What the rate-limiting remote asks for, in seconds (``Retry-After``)."""


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up (the registry closing a kept-alive connection) is no error."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: RemoteFront

    def do_GET(self) -> None:
        self._relay()

    def do_HEAD(self) -> None:
        self._relay()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _relay(self) -> None:
        front = self.owner
        front.requests.append((self.command, self.path))
        if front.rate_limited and self.path != "/v2/":
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            # Short: skopeo honours it between its retries, and waited 4 x 30 s in the test.
            self.send_header("Retry-After", str(RETRY_AFTER))
            self.send_header("Content-Length", str(len(RATE_LIMITED)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(RATE_LIMITED)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", front.target_port, timeout=60)
        try:
            # Header by header: a registry client repeats Accept, once per media type.
            upstream.putrequest(self.command, self.path, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            upstream.endheaders()
            resp = upstream.getresponse()
            body = resp.read()
            self.send_response(resp.status)
            for name, value in resp.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            length = resp.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)
        finally:
            upstream.close()


@dataclass
class Registries:
    """The public registry, the front before it, and the cache in proxy mode."""

    public: Registry
    front: RemoteFront
    cache: Registry

    def stop(self) -> None:
        self.cache.stop()
        self.front.go_down()
        self.public.stop()


def start_registries(workdir: Path) -> Registries:
    public = make_registry(workdir / "public")
    front = RemoteFront(public.port)
    cache = make_registry(workdir / "cache", {"proxy": {"remoteurl": front.url}})
    return Registries(public, front, cache)


@dataclass(frozen=True)
class PublicImage:
    """An image pushed to the public registry."""

    repository: str
    tag: str
    digest: str
    manifest: bytes
    layer: str
    """The digest of its one layer."""

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


def layer_of(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip'd tar holding ``files`` (path -> content), and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    return gzip.compress(plain, 1, mtime=0), "sha256:" + hashlib.sha256(plain).hexdigest()


def publish(
    public: Registry,
    repository: str,
    tag: str,
    files: dict[str, bytes],
    labels: dict[str, str] | None = None,
) -> PublicImage:
    """Push an image of one layer holding ``files`` to the public registry."""
    data, diff_id = layer_of(files)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": created(),
            "config": {"User": "1000", "Labels": labels or {}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    with httpx.Client(base_url=public.url, timeout=60) as client:
        digest, manifest = push_image(client, repository, tag, [data], config)
    layer = json.loads(manifest)["layers"][0]["digest"]
    return PublicImage(repository, tag, digest, manifest, layer)


def manifest_of(client: httpx.Client, image: PublicImage) -> httpx.Response:
    """A client's GET of the image's manifest by tag."""
    return client.get(
        f"/v2/{image.repository}/manifests/{image.tag}", headers={"Accept": OCI_MANIFEST}
    )
