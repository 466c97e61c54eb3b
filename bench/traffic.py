"""The mixed load of a CI fleet: many clients pulling images, a few pushing new ones.

Every client is a closed loop (send, read the whole answer, send the next) for a fixed time and
at most a fixed number of requests, and every request is kept as a :class:`Sent` record, so the
caller can both summarize latencies and prove the access log holds one row per request. Bad
answers are recorded as errors, never raised: a load test reports all of them, not the first.

Pullers fetch a seeded image's manifest by tag, then its layer. Pushers push brand-new small
images: a config with a monolithic upload (``POST`` then ``PUT ?digest=``), a layer either the
same way or in two ``PATCH`` chunks before the closing ``PUT``, alternately, then the manifest.

:func:`run_share` is what a generator process runs (it is a plain top-level function so a
``spawn`` process pool can call it); the load can be split over several processes because one
Python event loop driving 220 clients needs most of a core on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import os
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

MANIFEST_PULL = "manifest.pull"
BLOB_PULL = "blob.pull"
BLOB_UPLOAD = "blob.upload"
MANIFEST_PUSH = "manifest.push"
KINDS = (MANIFEST_PULL, BLOB_PULL, BLOB_UPLOAD, MANIFEST_PUSH)
"""Request classes reported separately: their latencies differ by orders of magnitude."""

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REQUEST_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Sent:
    """One request as the client saw it."""

    kind: str
    """One of :data:`KINDS`."""
    method: str
    path: str
    """Path without the query string, as the access log's route matching sees it."""
    status: int
    """HTTP status, or 0 when no response arrived (connection error, timeout)."""
    request_id: str | None
    """The ``X-Request-Id`` the gatekeeper answered with; the registry sends none."""
    seconds: float
    """Request sent to body fully read."""
    body_bytes: int
    """Response body bytes read (pull throughput is counted from these)."""
    error: str | None
    """Why this request is an error (wrong status, short body, exception), else None."""


@dataclass(frozen=True)
class PullImage:
    """A seeded image pullers fetch: what its manifest and layer must look like."""

    repository: str
    tag: str
    manifest: bytes
    layer_digest: str
    layer_size: int


@dataclass(frozen=True)
class Share:
    """What one generator process runs; picklable, so it crosses a process boundary."""

    base_url: str
    images: tuple[PullImage, ...]
    pullers: int
    pushers: int
    duration: float
    max_requests: int
    """This process stops starting requests after this many, even before ``duration``."""
    push_bytes: int
    """Size of each pushed layer's single file (the tar is a little larger)."""
    push_prefix: str
    """Pushed images go to ``<push_prefix>-<pusher>`` so runs and targets never collide."""


@dataclass(frozen=True)
class ShareResult:
    """What one generator process brings back."""

    sent: list[Sent]
    started: float
    """Wall clock (``time.time()``, comparable across processes) when the first client began."""
    ended: float
    """Wall clock when the last client finished its last request."""
    cpu_seconds: float
    """CPU the generator process itself used: near ``ended - started`` means it was the limit."""


def run_share(share: Share) -> ShareResult:
    """Run one process's clients to the end of ``share.duration``; every request's record."""
    cpu, started = time.process_time(), time.time()
    sent = asyncio.run(_run(share))
    return ShareResult(sent, started, time.time(), time.process_time() - cpu)


async def _run(share: Share) -> list[Sent]:
    sent: list[Sent] = []
    budget = _Budget(share.max_requests, time.monotonic() + share.duration)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = _Client(session, share.base_url, sent)
        workers = [
            *(_puller(client, share.images, n, budget) for n in range(share.pullers)),
            *(
                _pusher(client, f"{share.push_prefix}-{n}", share.push_bytes, budget)
                for n in range(share.pushers)
            ),
        ]
        await asyncio.gather(*workers)
    return sent


class _Budget:
    """Time and count bounds shared by one process's clients."""

    def __init__(self, max_requests: int, deadline: float) -> None:
        self.left = max_requests
        self.deadline = deadline

    def take(self, count: int = 1) -> bool:
        """Reserve ``count`` requests (one client step); False once time or count is spent."""
        if self.left < count or time.monotonic() >= self.deadline:
            return False
        self.left -= count
        return True


class _Client:
    """One request, timed and recorded, whatever happens."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, sent: list[Sent]) -> None:
        self.session = session
        self.base_url = base_url
        self.sent = sent

    async def call(
        self,
        kind: str,
        method: str,
        url: str,
        *,
        expect: int,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        expect_body: bytes | int | None = None,
    ) -> Mapping[str, str] | None:
        """Send one request; the response headers if it was what ``expect`` says, else None.

        ``expect_body`` is the exact body (bytes) or its exact size (int) a pull must get.
        """
        absolute = urljoin(f"{self.base_url}/", url)
        path = urlsplit(absolute).path
        start = time.perf_counter()
        status, request_id, size, error = 0, None, 0, None
        response_headers: Mapping[str, str] | None = None
        try:
            async with self.session.request(method, absolute, data=body, headers=headers) as resp:
                data = await resp.read()
            status, size = resp.status, len(data)
            request_id = resp.headers.get("X-Request-Id")
            response_headers = resp.headers
            error = _check(resp.status, expect, data, expect_body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        self.sent.append(Sent(kind, method, path, status, request_id, seconds, size, error))
        return response_headers if error is None else None


def _check(status: int, expect: int, data: bytes, expect_body: bytes | int | None) -> str | None:
    if status != expect:
        return f"status {status}, want {expect}: {data[:200]!r}"
    if isinstance(expect_body, int) and len(data) != expect_body:
        return f"{len(data)} bytes, want {expect_body}"
    if isinstance(expect_body, bytes) and data != expect_body:
        return f"body differs from the seeded one ({len(data)} bytes): {data[:200]!r}"
    return None


async def _puller(
    client: _Client, images: tuple[PullImage, ...], number: int, budget: _Budget
) -> None:
    accept = {"Accept": OCI_MANIFEST}
    for step in itertools.count(number):
        if not budget.take(2):
            return
        image = images[step % len(images)]
        base = f"/v2/{image.repository}"
        got = await client.call(
            MANIFEST_PULL,
            "GET",
            f"{base}/manifests/{image.tag}",
            expect=200,
            headers=accept,
            expect_body=image.manifest,
        )
        if got is not None:
            await client.call(
                BLOB_PULL,
                "GET",
                f"{base}/blobs/{image.layer_digest}",
                expect=200,
                expect_body=image.layer_size,
            )


async def _pusher(client: _Client, repository: str, push_bytes: int, budget: _Budget) -> None:
    for step in itertools.count():
        # Monolithic: 2 requests per blob; chunked: 4 for the layer. Plus the manifest PUT.
        chunked = step % 2 == 1
        if not budget.take(2 + (4 if chunked else 2) + 1):
            return
        layer = tar_layer(push_bytes)
        config = image_config(layer)
        if not await _push_blob(client, repository, config, chunked=False):
            continue
        if not await _push_blob(client, repository, layer, chunked=chunked):
            continue
        await client.call(
            MANIFEST_PUSH,
            "PUT",
            f"/v2/{repository}/manifests/t{step}",
            expect=201,
            body=image_manifest(config, layer),
            headers={"Content-Type": OCI_MANIFEST},
        )


async def _push_blob(client: _Client, repository: str, data: bytes, *, chunked: bool) -> bool:
    """Upload ``data``; False (the failing request already recorded) if any step failed."""
    started = await client.call(BLOB_UPLOAD, "POST", f"/v2/{repository}/blobs/uploads/", expect=202)
    if started is None:
        return False
    location = str(started.get("Location", ""))
    digest, body = _digest(data), data
    if chunked:
        half = len(data) // 2
        for first, chunk in ((0, data[:half]), (half, data[half:])):
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{first}-{first + len(chunk) - 1}",
            }
            moved = await client.call(
                BLOB_UPLOAD, "PATCH", location, expect=202, body=chunk, headers=headers
            )
            if moved is None:
                return False
            location = str(moved.get("Location", ""))
        body = b""
    closed = await client.call(
        BLOB_UPLOAD,
        "PUT",
        _with_query(location, f"digest={digest}"),
        expect=201,
        body=body,
        headers={"Content-Type": "application/octet-stream"},
    )
    return closed is not None


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def tar_layer(size: int) -> bytes:
    """An uncompressed tar holding one file of fresh random bytes: a new blob every time."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data/payload.bin")
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return buffer.getvalue()


def image_config(layer: bytes) -> bytes:
    return _canonical(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        }
    )


def image_manifest(config: bytes, layer: bytes) -> bytes:
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
        }
    )


def _canonical(document: dict[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
