"""What each request class of the load test costs in PostgreSQL round trips (issue 15).

Under load every round trip waits for a serving loop that has a hundred other requests to
run, so their number per request sets the gatekeeper's rate: the pool's pre-ping alone was
three per checkout (``BEGIN``, ``;``, ``ROLLBACK``) and a read session two more (its ``BEGIN``
and ``ROLLBACK``), most of what a pull cost. These tests hold each class to its count, so a
statement added on a hot path fails here and is a choice, not an accident. The gatekeeper
runs in this process (so its engines can be counted, the writer thread's too) in front of
the real registry; what its background tasks send (the access log's batches, heartbeats,
verification) is not the request's and is not counted (``tests.support.roundtrips``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp.test_utils import TestServer

from config.settings import load_settings
from proxy import gate as gate_module
from proxy import upload_sessions
from proxy.app import create_app
from proxy.upload_sessions import PruneClock
from storage import db as storage_db
from storage import verdicts
from tests.support.database import Database
from tests.support.gatekeeper import TEST_KEY_ENCRYPTION_KEY, WARN_EVERYTHING
from tests.support.ocihttp import OCI_MANIFEST, image_config, image_manifest
from tests.support.registry import Registry
from tests.support.roundtrips import RoundTrips, middleware

pytestmark = pytest.mark.database
T = TypeVar("T")
ACCEPT = {"Accept": OCI_MANIFEST}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Gate:
    """The in-process gatekeeper, an HTTP client to it, and its engine's round trips."""

    def __init__(self, client: httpx.AsyncClient, trips: RoundTrips) -> None:
        self.client = client
        self.trips = trips

    async def counted(self, method: str, url: str, expect: int, **kwargs: Any) -> int:
        """Send one request; the round trips it made."""
        await asyncio.sleep(0.3)  # what the previous request started (tasks of its own) ends
        self.trips.reset()
        response = await self.client.request(method, url, **kwargs)
        assert response.status_code == expect, response.text
        self.last = response
        return self.trips.total - self.trips.calls["prepare"]

    async def upload(self, repository: str, data: bytes) -> tuple[int, int]:
        """A monolithic upload: round trips of its POST and of its closing PUT."""
        post = await self.counted("POST", f"/v2/{repository}/blobs/uploads/", 202)
        location = self.last.headers["Location"]
        sep = "&" if "?" in location else "?"
        put = await self.counted(
            "PUT",
            f"{location}{sep}digest={_digest(data)}",
            201,
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        return post, put


GateFactory = Callable[[str], AbstractAsyncContextManager[Gate]]


@pytest.fixture
def make_gate(
    registry: Registry, postgres_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> GateFactory:
    """A gatekeeper caching pullable verdicts and allowed blobs for ``cache_seconds``."""
    monkeypatch.setattr(storage_db, "PING_IDLE_SECONDS", 3600.0)  # see the ping's own test
    # Other identities' idle rows are pruned beside a reservation every few seconds, not per
    # request (tests/unit/proxy/test_upload_sessions.py): never here, so no count depends on
    # how long the machine took between two POSTs.
    monkeypatch.setattr(PruneClock, "due", lambda _self: False)
    # Likewise the two memories of a moment ago: a POST always reads what its identity holds
    # (the admission read less than KNOWN_SECONDS old, with this test's pauses, was sometimes
    # still fresh: 4, sometimes not: 5), and a closing PUT always finds its session recorded
    # a moment ago (as its own POST did; a loaded machine could take longer than a second).
    monkeypatch.setattr(upload_sessions, "KNOWN_SECONDS", 0.0)
    monkeypatch.setattr(upload_sessions, "USED_SECONDS", 3600.0)

    @contextlib.asynccontextmanager
    async def make(cache_seconds: str) -> AsyncIterator[Gate]:
        settings = load_settings(
            env={
                "GATEKEEPER_UPSTREAM_URL": registry.url,
                "GATEKEEPER_DATABASE_URL": postgres_db.url,
                "GATEKEEPER_AUDIT__FLUSH_INTERVAL_SECONDS": "0.1",
                "GATEKEEPER_AUDIT__SPOOL_DIR": str(tmp_path / "audit-spool"),
                "GATEKEEPER_POLICIES": WARN_EVERYTHING,
                "GATEKEEPER_AUTH__ENABLED": "false",
                "GATEKEEPER_AUTH__KEY_ENCRYPTION_KEY": TEST_KEY_ENCRYPTION_KEY,
                "GATEKEEPER_REPLICA__HEARTBEAT_SECONDS": "60",
                "GATEKEEPER_VERIFICATION__VERDICT_CACHE_SECONDS": cache_seconds,
            }
        )
        app = create_app(settings)
        app.middlewares.insert(0, middleware)
        server = TestServer(app)
        with RoundTrips().counting() as trips:
            await server.start_server()
            base = str(server.make_url(""))
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                yield Gate(client, trips)
            await server.close()

    return make


async def _counts(gate: Gate) -> dict[str, list[int]]:
    """Each request class twice: the first warms (a statement's first use on a connection
    also prepares it), the second is what every later one costs."""
    counts: dict[str, list[int]] = {}
    repository = "trips/app"
    for step in range(2):
        layer = f"layer {step}".encode() * 100
        config = image_config({"step": str(step)})
        post, put = await gate.upload(repository, config)
        counts.setdefault("upload POST", []).append(post)
        counts.setdefault("upload closing PUT", []).append(put)
        await gate.upload(repository, layer)
        manifest = image_manifest(config, [layer])
        push = await gate.counted(
            "PUT",
            f"/v2/{repository}/manifests/t{step}",
            201,
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        counts.setdefault("manifest push", []).append(push)
    for _ in range(100):  # its verification, in this process's worker
        pulled = await gate.client.get(f"/v2/{repository}/manifests/t1", headers=ACCEPT)
        if pulled.status_code == 200:
            break
        await asyncio.sleep(0.1)
    for _ in range(2):
        pull = await gate.counted("GET", f"/v2/{repository}/manifests/t1", 200, headers=ACCEPT)
        counts.setdefault("manifest pull", []).append(pull)
        blob = await gate.counted("GET", f"/v2/{repository}/blobs/{_digest(layer)}", 200)
        counts.setdefault("blob pull", []).append(blob)
    return counts


EXPECTED = {
    # 5 before (7, 10 before that): a read of the count before asking the upstream (skipped
    # when a read a moment ago left the identity far below its cap; never here), then the
    # reservation: one statement, outside a transaction (the owner's lock and the
    # count-and-insert in a function of migration 0022's), not BEGIN, two statements, COMMIT.
    "upload POST": 2,
    # 4 before (6 before that): the session's row is not read again a moment after its POST
    # recorded it (proxy.upload_sessions.USED_SECONDS), stale fresh uploads are forgotten only
    # now and then (never here: PruneClock.due), and the blob made fresh and the session's
    # end are one statement outside a transaction (storage.uploads.complete).
    "upload closing PUT": 1,
    # 10 before (12 before that): the index's insert says whether the manifest is new (no
    # read first), the tag is one upsert, not the ORM's merge (a read, then an insert), and
    # the job is queued unless queued already in one statement (a read, then an insert).
    "manifest push": 9,
    "manifest pull": 1,
    "blob pull": 3,
}
"""Round trips per request once warm (statements prepared), verdicts not cached."""


async def test_round_trips_per_request_class(make_gate: GateFactory) -> None:
    async with make_gate("0") as gate:
        counts = await _counts(gate)
    assert {name: runs[-1] for name, runs in counts.items()} == EXPECTED, counts


async def test_concurrent_pulls_that_miss_the_cache_read_once(
    make_gate: GateFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every verdict change drops every cached decision (a push's verdict, several a second
    under the load test); the hundred pulls in flight then all missed together, and each read
    the verdict or judged the blob itself (``services.singleflight``). Here each read first
    waits a moment, so all twenty pulls arrive while the first one's runs."""
    async with make_gate("1") as gate:
        await _counts(gate)  # an image to pull, every statement prepared
        repository, layer = "trips/app", _digest(b"layer 1" * 100)
        for module, name in ((verdicts, "get"), (gate_module, "judge_blob")):
            monkeypatch.setattr(module, name, _slow(getattr(module, name)))
        await asyncio.sleep(1.5)  # what the warm-up cached has expired
        for path, reads in (("manifests/t1", 1), (f"blobs/{layer}", 3)):
            gate.trips.reset()
            pulls = [gate.client.get(f"/v2/{repository}/{path}", headers=ACCEPT) for _ in range(20)]
            assert {r.status_code for r in await asyncio.gather(*pulls)} == {200}
            assert gate.trips.total - gate.trips.calls["prepare"] == reads, gate.trips.calls


def _slow(read: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    async def slow(*args: Any, **kwargs: Any) -> T:
        await asyncio.sleep(1.0)
        return await read(*args, **kwargs)

    return slow
