"""Scheduled advisory sync: download OSV archives from a mirror only when they changed.

Each URL is fetched with the validators of the last archive imported from it (``ETag`` as
``If-None-Match``, ``Last-Modified`` as ``If-Modified-Since``), kept in the database so neither
a restarted replica nor another one downloads it again; ``304 Not Modified`` costs one request
and creates no new advisory data version. A changed archive is streamed to a temporary file
(never held in memory, capped at ``max_download_bytes`` and at ``download_deadline`` in all),
read with the same code as ``gatekeeper advisories import`` (records streamed, each capped)
and imported in one transaction; then the images it may affect are queued for re-verification.

The URLs are synced side by side (one slow mirror does not hold up the others), their imports
one at a time. A mirror is input we do not control: whatever goes wrong in the sync of one URL,
expected (``SYNC_ERRORS``) or not, makes that URL's result ``failed``; it keeps the data already
imported, is logged and counted, and is tried again at the next due time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy.ext.asyncio import async_sessionmaker

from config.scheduling import AdvisoriesSettings
from services.advisory_import import import_path, read_limits
from services.rescan import queue_affected
from storage import schedules
from storage.advisories import ImportResult
from storage.db import DATABASE_ERRORS
from storage.timeutil import now as utcnow
from upstream.tls import verifying_context
from verifiers.vulns.load import LoadError, Rejected

log = logging.getLogger("gatekeeper.advisories")

CHUNK = 256 * 1024
SYNC_LOCK = "advisory-sync"
"""The cluster-wide lock a sync holds (``storage/locks.py``): scheduler and CLI alike."""
LOGGED_REJECTS = 20
"""Skipped records logged one by one per sync; a hostile archive may hold millions."""
Queue = Callable[[async_sessionmaker[Any], ImportResult], Awaitable[int]]


class MirrorError(Exception):
    """A sync that cannot complete: a bad answer, an oversized or unreadable archive."""


# What a failed sync is expected to look like (logged without a traceback). Anything else is
# a bug, but still only a failed sync of that URL: it is logged with its traceback.
SYNC_ERRORS: tuple[type[Exception], ...] = (
    httpx.HTTPError,
    MirrorError,
    LoadError,
    OSError,
    zipfile.BadZipFile,
    *DATABASE_ERRORS,
)


@dataclass(frozen=True)
class SyncResult:
    """What one sync of one URL did."""

    url: str
    """The URL without credentials, query or fragment (safe to log and print)."""
    status: str
    """``imported``, ``not-modified`` or ``failed``."""
    data_version: int | None = None
    """The advisory data version the download became (``imported`` only)."""
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    """Records in the archive that were not valid OSV (skipped, logged)."""
    queued: int = 0
    """Images re-evaluated or queued for re-verification because the import touched their
    packages (what ``services.rescan.queue_affected`` returns)."""
    error: str | None = None


def display_url(url: str) -> str:
    """``url`` without user info, query and fragment: mirrors often carry a token there."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


class MirrorSync:
    """Syncs every configured URL; the HTTP client is injected (and owned by the caller)."""

    def __init__(
        self,
        settings: AdvisoriesSettings,
        db: async_sessionmaker[Any],
        client: httpx.AsyncClient,
        *,
        on_result: Callable[[SyncResult], None] | None = None,
        queue: Queue = queue_affected,
    ) -> None:
        self.settings = settings
        self.db = db
        self.client = client
        self._on_result = on_result or (lambda result: None)
        self._queue = queue
        self._importing = asyncio.Lock()
        """Downloads run side by side, imports one at a time (one writer, one transaction)."""

    async def sync_all(self, *, force: bool = False) -> list[SyncResult]:
        """Sync every URL side by side; one failing or slow URL does not stop the others.
        Results in the order the URLs are configured."""
        return list(await asyncio.gather(*(self.sync(u, force=force) for u in self.settings.urls)))

    async def sync(self, url: str, *, force: bool = False) -> SyncResult:
        """One conditional download and import of ``url`` (``force``: unconditional). Never
        raises, except to cancel: every failure is a ``failed`` result, logged and counted."""
        shown = display_url(url)
        try:
            result = await self._sync(url, shown, force)
        except SYNC_ERRORS as exc:
            result = await self._failed(url, shown, _describe(exc))
        except Exception as exc:
            log.exception("advisory sync of %s failed unexpectedly", shown)
            result = await self._failed(url, shown, f"{exc.__class__.__name__}: {exc}")
        self._on_result(result)
        return result

    async def _failed(self, url: str, shown: str, description: str) -> SyncResult:
        message = description.replace(url, shown)  # never the token of a URL
        log.error(
            "advisory sync of %s failed, keeping the data already imported: %s", shown, message
        )
        try:
            async with self.db() as session, session.begin():
                await schedules.record_mirror(session, url_key(url), shown, utcnow(), error=message)
        except DATABASE_ERRORS as db_exc:
            log.error("cannot record the failed sync of %s: %s", shown, db_exc)
        return SyncResult(shown, "failed", error=message)

    async def _sync(self, url: str, shown: str, force: bool) -> SyncResult:
        key = url_key(url)
        async with self.db() as session:
            known = await schedules.mirror(session, key)
        with tempfile.TemporaryDirectory(prefix="gatekeeper-osv-") as tmp:
            suffix = ".json" if urlsplit(url).path.endswith(".json") else ".zip"
            path = Path(tmp, "archive" + suffix)
            validators = await self._download_within_deadline(url, path, None if force else known)
            if validators is None:
                await self._record(key, shown)
                log.info("advisories at %s unchanged (304)", shown)
                return SyncResult(shown, "not-modified", known.data_version if known else None)
            async with self._importing:
                imported, rejected = await self._import(path, shown)
        await self._record(key, shown, imported=(*validators, imported.data_version))
        queued = await self._queue(self.db, imported)
        log.info(
            "advisories from %s: data version %s, %s added, %s updated, %s unchanged, "
            "%s rejected; %s images re-evaluated or queued",
            shown,
            imported.data_version,
            imported.added,
            imported.updated,
            imported.unchanged,
            rejected,
            queued,
        )
        return SyncResult(
            shown,
            "imported",
            imported.data_version,
            imported.added,
            imported.updated,
            imported.unchanged,
            rejected,
            queued,
        )

    async def _download_within_deadline(
        self, url: str, path: Path, known: schedules.MirrorView | None
    ) -> tuple[str | None, str | None] | None:
        """:meth:`_download`, abandoned once it has taken ``download_deadline`` in all."""
        deadline = self.settings.download_deadline
        try:
            async with asyncio.timeout(deadline):
                return await self._download(url, path, known)
        except TimeoutError:
            raise MirrorError(
                f"the download took longer than download_deadline ({deadline:g}s)"
            ) from None

    async def _download(
        self, url: str, path: Path, known: schedules.MirrorView | None
    ) -> tuple[str | None, str | None] | None:
        """GET ``url`` into ``path``, conditional on ``known``'s validators: the new
        (ETag, Last-Modified), or None for 304 Not Modified."""
        headers = {}
        if known is not None and known.etag:
            headers["If-None-Match"] = known.etag
        if known is not None and known.last_modified:
            headers["If-Modified-Since"] = known.last_modified
        async with self.client.stream("GET", url, headers=headers) as resp:
            if resp.status_code == 304:
                return None
            if resp.status_code != 200:
                raise MirrorError(f"the mirror answered HTTP {resp.status_code}")
            await self._save(resp, path)
            return resp.headers.get("ETag"), resp.headers.get("Last-Modified")

    async def _record(
        self, key: str, shown: str, imported: tuple[str | None, str | None, int] | None = None
    ) -> None:
        async with self.db() as session, session.begin():
            await schedules.record_mirror(session, key, shown, utcnow(), imported=imported)

    async def _save(self, resp: httpx.Response, path: Path) -> None:
        limit = self.settings.max_download_bytes
        size = 0
        with path.open("wb") as out:
            async for chunk in resp.aiter_bytes(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise MirrorError(f"the archive is larger than max_download_bytes ({limit})")
                out.write(chunk)

    async def _import(self, path: Path, shown: str) -> tuple[ImportResult, int]:
        try:
            imported = await import_path(
                self.db,
                path,
                read_limits(self.settings),
                source=shown,
                on_reject=_reject_logger(shown, str(path)),
            )
        except LoadError as exc:
            message = str(exc).replace(str(path), "the archive")  # not our temporary file
            raise MirrorError(f"cannot import the archive: {message}") from None
        if imported.rejected > LOGGED_REJECTS:
            log.warning("%s more records skipped in %s", imported.rejected - LOGGED_REJECTS, shown)
        return imported.result, imported.rejected


def _reject_logger(shown: str, path: str) -> Callable[[Rejected], None]:
    """Logs the first ``LOGGED_REJECTS`` skipped records of one sync, naming each."""
    logged = 0

    def log_reject(reject: Rejected) -> None:
        nonlocal logged
        if logged < LOGGED_REJECTS:
            logged += 1
            # The zip member, not our temporary file.
            where = reject.where.removeprefix(path).removeprefix(":") or "the archive"
            log.warning("skipping OSV record %s in %s: %s", where, shown, reject.reason)

    return log_reject


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({exc.__class__.__name__})"
    if isinstance(exc, httpx.HTTPError):
        return f"{exc.__class__.__name__}: {exc}"
    if isinstance(exc, zipfile.BadZipFile):
        return f"not a zip archive: {exc}"
    return str(exc) or exc.__class__.__name__


def make_mirror_client(settings: AdvisoriesSettings) -> httpx.AsyncClient:
    """One client for every sync: the timeout bounds connecting and each silence while
    downloading, not the whole (possibly large) download."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout_seconds),
        follow_redirects=True,
        verify=verifying_context(),
    )
