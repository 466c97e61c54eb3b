"""Advisory mirror sync against a local HTTP server serving a zip of real OSV records:
conditional requests, 304 without re-import, validators that survive a restart, failures
that keep the old data, and the scheduler's due times."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from config.settings import Settings, load_settings
from proxy.metrics import Metrics
from proxy.mirror import MirrorSync, SyncResult, display_url
from proxy.scheduler import Scheduler
from storage import schedules
from storage.advisories import DbAdvisoryStore, ImportResult
from storage.locks import LeaseLock

OSV = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "osv" / "pypi"
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
    """Stands in for ``proxy.rescan.queue_affected`` and remembers what it was handed."""

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
        from proxy.mirror import url_key

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
        from proxy.mirror import url_key

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
        assert not await scheduler.sync_mirror(now[0] + timedelta(minutes=59))
        now[0] += timedelta(hours=1)
        assert await scheduler.sync_mirror(now[0])
    assert len(fake.requests) == 2 and fake.downloads == 1
