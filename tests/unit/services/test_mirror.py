"""Advisory mirror sync against a local HTTP server serving a zip of real OSV records:
conditional requests, 304 without re-import, validators that survive a restart, failures
that keep the old data, and the scheduler's due times."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from config.settings import Settings, load_settings
from proxy.metrics import Metrics
from services.mirror import MirrorSync, SyncResult, display_url
from services.scheduler import SYNC, Scheduler
from storage import schedules
from storage.advisories import DbAdvisoryStore, ImportResult
from storage.locks import LeaseLock
from storage.timeutil import now as utcnow
from tests.support.testdata import OSV_PYPI

pytestmark = pytest.mark.testdata

OSV = OSV_PYPI
LAST_MODIFIED = "Mon, 30 Nov 2026 10:00:00 GMT"


def archive(names: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in names:
            zf.write(OSV / name, name)
    return buffer.getvalue()


class Mirror:
    """A static file server that honours If-None-Match, like OSV's bucket does."""

    def __init__(self, body: bytes, etag: str) -> None:
        self.body, self.etag, self.status = body, etag, 200
        self.requests: list[dict[str, str]] = []
        self.downloads = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        if self.status != 200:
            return web.Response(status=self.status, text="mirror trouble")
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers={"ETag": self.etag})
        self.downloads += 1
        headers = {"ETag": self.etag, "Last-Modified": LAST_MODIFIED}
        return web.Response(body=self.body, headers=headers, content_type="application/zip")


@pytest.fixture
async def mirror() -> AsyncIterator[tuple[Mirror, str]]:
    fake = Mirror(archive(["PYSEC-2023-117.json", "PYSEC-2023-135.json"]), '"v1"')
    app = web.Application()
    app.router.add_get("/PyPI/all.zip", fake.handle)
    server = TestServer(app)
    await server.start_server()
    # A token in the query must never reach logs or the database.
    yield fake, str(server.make_url("/PyPI/all.zip?token=s3cr3t"))
    await server.close()


def config(url: str, **extra: str) -> Settings:
    env = {"GATEKEEPER_ADVISORIES__MIRROR_URL": url, **extra}
    return load_settings(env=env)


class Queued:
    """Stands in for ``services.rescan.queue_affected`` and remembers what it was handed."""

    def __init__(self) -> None:
        self.calls: list[ImportResult] = []

    async def __call__(self, db: Any, result: ImportResult) -> int:
        self.calls.append(result)
        return len(result.packages)


async def sync_once(db: Any, settings: Settings, queue: Queued, **kw: Any) -> SyncResult:
    metrics = Metrics()
    async with httpx.AsyncClient() as client:
        sync = MirrorSync(
            settings.advisories,
            db,
            client,
            queue=queue,
            on_result=lambda r: metrics.advisory_syncs.labels(r.status).inc(),
        )
        (result,) = await sync.sync_all(**kw)
    assert metrics.advisory_syncs.labels(result.status)._value.get() == 1
    return result


async def test_first_sync_imports_and_an_unchanged_archive_is_not_downloaded_again(
    db: Any, mirror: tuple[Mirror, str]
) -> None:
    fake, url = mirror
    settings, queue = config(url), Queued()
    first = await sync_once(db, settings, queue)
    assert (first.status, first.added, first.rejected) == ("imported", 2, 0)
    assert "token" not in first.url and first.url == display_url(url)
    assert len(queue.calls) == 1 and queue.calls[0].data_version == first.data_version
    version = await DbAdvisoryStore(db).data_version()

    # A new MirrorSync (a restarted or another replica): validators come from the database.
    second = await sync_once(db, settings, queue)
    assert (second.status, second.data_version) == ("not-modified", first.data_version)
    assert fake.requests[-1]["If-None-Match"] == '"v1"'
    assert fake.requests[-1]["If-Modified-Since"] == LAST_MODIFIED
    assert fake.downloads == 1 and len(queue.calls) == 1
    assert await DbAdvisoryStore(db).data_version() == version  # no new data version

    fake.body, fake.etag = archive(["PYSEC-2023-117.json", "PYSEC-2023-192.json"]), '"v2"'
    third = await sync_once(db, settings, queue)
    assert (third.status, third.added, third.unchanged) == ("imported", 1, 1)
    assert third.data_version is not None and third.data_version > version

    forced = await sync_once(db, settings, queue, force=True)
    assert forced.status == "imported" and "If-None-Match" not in fake.requests[-1]
    async with db() as session:
        from services.mirror import url_key

        stored = await schedules.mirror(session, url_key(url))
    assert stored is not None and "token" not in stored.display_url
    assert (stored.etag, stored.failures, stored.last_error) == ('"v2"', 0, None)


async def test_a_failed_sync_keeps_the_old_data_and_is_counted(
    db: Any, mirror: tuple[Mirror, str]
) -> None:
    fake, url = mirror
    settings, queue = config(url), Queued()
    await sync_once(db, settings, queue)
    version = await DbAdvisoryStore(db).data_version()

    fake.status = 503
    failed = await sync_once(db, settings, queue)
    assert failed.status == "failed" and "HTTP 503" in (failed.error or "")

    fake.status, fake.body, fake.etag = 200, b"not a zip at all", '"broken"'
    broken = await sync_once(db, settings, queue)
    assert broken.status == "failed" and "zip" in (broken.error or "")

    small = config(url, GATEKEEPER_ADVISORIES__MAX_DOWNLOAD_BYTES="1024")
    fake.body = archive(["PYSEC-2023-221.json", "PYSEC-2023-228.json", "PYSEC-2023-246.json"])
    fake.etag = '"v3"'
    oversized = await sync_once(db, small, queue)
    assert oversized.status == "failed" and "max_download_bytes" in (oversized.error or "")

    assert await DbAdvisoryStore(db).data_version() == version
    assert len(queue.calls) == 1
    async with db() as session:
        from services.mirror import url_key

        stored = await schedules.mirror(session, url_key(url))
    assert stored is not None and stored.failures == 3 and stored.etag == '"v1"'
    # The validators still describe the data imported, so the next check stays conditional.
    fake.body, fake.etag = archive(["PYSEC-2023-117.json", "PYSEC-2023-135.json"]), '"v1"'
    assert (await sync_once(db, settings, queue)).status == "not-modified"


async def test_an_unreachable_mirror_is_a_failed_sync(db: Any) -> None:
    settings = config("http://127.0.0.1:9/all.zip")  # discard port: connection refused
    result = await sync_once(db, settings, Queued())
    assert result.status == "failed" and result.error


async def test_the_scheduler_syncs_when_due(db: Any, mirror: tuple[Mirror, str]) -> None:
    fake, url = mirror
    settings = config(url, GATEKEEPER_ADVISORIES__SYNC_INTERVAL="1h")
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    async with httpx.AsyncClient() as client:
        sync = MirrorSync(settings.advisories, db, client, queue=Queued())
        scheduler = Scheduler(
            settings, db, LeaseLock(db, "scheduler", "me", 60), mirror=sync, clock=lambda: now[0]
        )
        assert await scheduler.sync_mirror(now[0])  # first tick ever: at once
        await scheduler.wait_sync()  # the sync runs as a task of its own
        assert not await scheduler.sync_mirror(now[0] + timedelta(minutes=59))
        now[0] += timedelta(hours=1)
        assert await scheduler.sync_mirror(now[0])
        await scheduler.wait_sync()
    assert len(fake.requests) == 2 and fake.downloads == 1


# -- hostile mirrors (issue 22, items 6 and 8) -----------------------------------------------


@pytest.fixture
async def mirrors() -> AsyncIterator[tuple[dict[str, Mirror], Any]]:
    """Several mirror paths on one server; ``/drip/all.zip`` sends one byte every 0.5 s."""
    fakes: dict[str, Mirror] = {}
    dripped: list[float] = []

    async def drip(request: web.Request) -> web.StreamResponse:
        body = fakes["/drip/all.zip"].body
        resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await resp.prepare(request)
        try:
            for offset in range(len(body)):
                await resp.write(body[offset : offset + 1])
                await asyncio.sleep(0.5)
        finally:
            dripped.append(time.monotonic())
        return resp

    app = web.Application()
    for name in ("a", "b", "drip"):
        fakes[f"/{name}/all.zip"] = Mirror(archive(["PYSEC-2023-117.json"]), f'"{name}"')
        if name != "drip":
            app.router.add_get(f"/{name}/all.zip", fakes[f"/{name}/all.zip"].handle)
    app.router.add_get("/drip/all.zip", drip)
    server = TestServer(app)
    await server.start_server()
    yield fakes, server
    await server.close()


def several(server: Any, *paths: str, **extra: str) -> Settings:
    urls = json.dumps([str(server.make_url(p)) for p in paths])
    return load_settings(env={"GATEKEEPER_ADVISORIES__MIRROR_URLS": urls, **extra})


async def sync_all(db: Any, settings: Settings, queue: Any) -> tuple[list[SyncResult], Metrics]:
    metrics = Metrics()
    async with httpx.AsyncClient(timeout=5) as client:
        sync = MirrorSync(
            settings.advisories,
            db,
            client,
            queue=queue,
            on_result=lambda r: metrics.advisory_syncs.labels(r.status).inc(),
        )
        return await sync.sync_all(), metrics


async def test_a_bad_record_is_skipped_and_the_rest_of_the_archive_imported(
    db: Any, mirrors: tuple[dict[str, Mirror], Any], caplog: pytest.LogCaptureFixture
) -> None:
    fakes, server = mirrors
    body = io.BytesIO(fakes["/a/all.zip"].body)
    with zipfile.ZipFile(body, "a") as zf:
        zf.writestr("BAD-ALIASES.json", json.dumps({"id": "BAD-ALIASES", "aliases": 5}))
    fakes["/a/all.zip"].body = body.getvalue()
    (result,), _ = await sync_all(db, several(server, "/a/all.zip"), Queued())
    assert (result.status, result.added, result.rejected) == ("imported", 1, 1)
    assert "skipping OSV record BAD-ALIASES.json in" in caplog.text
    assert "BAD-ALIASES: aliases: Input should be a valid list" in caplog.text


async def test_an_unexpected_error_fails_one_url_only_and_is_counted(
    db: Any, mirrors: tuple[dict[str, Mirror], Any]
) -> None:
    """A bug (here in re-evaluation) is still one failed URL: recorded, counted, logged;
    the other URL is synced all the same."""
    fakes, server = mirrors
    fakes["/b/all.zip"].body = archive(["PYSEC-2023-135.json"])
    queue = Queued()
    calls = 0

    async def broken_once(db: Any, result: ImportResult) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TypeError("'int' object is not iterable")
        return await queue(db, result)

    settings = several(server, "/a/all.zip", "/b/all.zip")
    (first, second), metrics = await sync_all(db, settings, broken_once)
    assert {first.status, second.status} == {"failed", "imported"}
    failed = first if first.status == "failed" else second
    assert failed.error == "TypeError: 'int' object is not iterable"
    assert metrics.advisory_syncs.labels("failed")._value.get() == 1
    assert metrics.advisory_syncs.labels("imported")._value.get() == 1
    async with db() as session:
        from services.mirror import url_key

        stored = await schedules.mirror(session, url_key(failed.url))
    assert stored is not None and stored.failures == 1 and stored.last_error == failed.error


async def test_a_dripping_download_stops_at_its_deadline_without_holding_up_the_others(
    db: Any, mirrors: tuple[dict[str, Mirror], Any]
) -> None:
    _, server = mirrors
    settings = several(
        server,
        "/drip/all.zip",
        "/a/all.zip",
        GATEKEEPER_ADVISORIES__DOWNLOAD_DEADLINE="2s",
        GATEKEEPER_ADVISORIES__TIMEOUT_SECONDS="1",  # > 0.5 s: only the deadline stops it
    )
    finished: dict[str, float] = {}
    started = time.monotonic()

    def note(result: SyncResult) -> None:
        finished[result.url] = time.monotonic() - started

    async with httpx.AsyncClient(timeout=1) as client:
        sync = MirrorSync(settings.advisories, db, client, queue=Queued(), on_result=note)
        dripped, other = await sync.sync_all()
    assert (dripped.status, other.status) == ("failed", "imported")
    assert dripped.error == "the download took longer than download_deadline (2s)"
    assert 2 <= finished[dripped.url] < 4
    assert finished[other.url] < 1.5  # not after the dripping one


async def test_the_tick_does_not_wait_for_a_sync(db: Any) -> None:
    """The sync runs as a task of its own: ticks go on (and start no second sync) while it
    runs; the next due time is set after it, even when it crashed."""
    settings = config("http://127.0.0.1:9/all.zip", GATEKEEPER_ADVISORIES__SYNC_INTERVAL="1h")
    release = asyncio.Event()
    syncs = 0

    class Stuck:
        async def sync_all(self) -> list[SyncResult]:
            nonlocal syncs
            syncs += 1
            await release.wait()
            raise RuntimeError("a bug")

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    scheduler = Scheduler(
        settings,
        db,
        LeaseLock(db, "scheduler", "me", 60),
        mirror=Stuck(),  # type: ignore[arg-type]
        sync_lock=LeaseLock(db, "advisory-sync", "me", 60),
        clock=lambda: now[0],
    )
    assert await asyncio.wait_for(scheduler.tick(), 5)
    await asyncio.sleep(0.1)
    assert syncs == 1
    assert await asyncio.wait_for(scheduler.tick(), 5)  # not held up, starts no second sync
    assert not await scheduler.sync_mirror(now[0])
    release.set()
    await scheduler.wait_sync()
    async with db() as session:
        assert await schedules.due_at(session, SYNC) == now[0] + timedelta(hours=1)
    assert syncs == 1


async def test_a_sync_waits_for_the_sync_lock_of_another_process(db: Any) -> None:
    settings = config("http://127.0.0.1:9/all.zip", GATEKEEPER_ADVISORIES__SYNC_INTERVAL="1h")
    synced: list[bool] = []

    class Counting:
        async def sync_all(self) -> list[SyncResult]:
            synced.append(True)
            return []

    def scheduler(owner: str) -> Scheduler:
        return Scheduler(
            settings,
            db,
            LeaseLock(db, "scheduler", owner, 60),
            mirror=Counting(),  # type: ignore[arg-type]
            sync_lock=LeaseLock(db, "advisory-sync", owner, 60),
        )

    here = scheduler("here")
    async with LeaseLock(db, "advisory-sync", "elsewhere", 60).hold() as held:
        assert held  # `gatekeeper advisories sync`, or another replica, is syncing
        assert await here.sync_mirror(utcnow())
        await here.wait_sync()
        assert synced == []
    assert await here.sync_mirror(utcnow())
    await here.wait_sync()
    assert synced == [True]
