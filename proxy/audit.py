"""The access log: one row per request, written in batches off the request path.

Rows are queued in memory and written by one background task, so a slow database never slows a
pull. Nothing is dropped: a failed batch stays queued and is retried with back-off, and on a
clean stop the writer drains the queue before the database is closed, so every served request
has its row. Nothing is lost to a crash either: with a spool (``proxy.audit_spool``, what
``gatekeeper serve`` uses) each row is on the replica's disk before it waits in memory, and a
response's provisional row before its first byte goes out; the next start replays what the
database did not get.

The queue is bounded (``audit.max_buffered``): while the database is away it fills, and once it
is full the middleware refuses new requests with 503 instead of serving them unrecorded. The
limit is an admission threshold, not a hard cap: requests already in flight when it is reached
still get their rows, so it can be exceeded by at most the number of concurrent requests. A
spool that cannot be written (its disk full) refuses new requests the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import AuditSettings
from oci.errors import Code, OCIError
from proxy.audit_ledger import Ledger
from proxy.audit_spool import Spool
from proxy.context import RequestInfo, info
from proxy.errors import OCI_ERROR, Handler, error_response
from services.events import VerdictChange
from storage import audit_chain
from storage.audit import AccessRecord, insert_records
from storage.audit_chain import Head
from storage.writer import transact

log = logging.getLogger("gatekeeper.audit")
access_log = logging.getLogger("gatekeeper.access")


class AuditWriter:
    """Batches access records into the database, each first appended to the spool if any."""

    def __init__(
        self,
        db: async_sessionmaker[Any],
        settings: AuditSettings,
        on_failure: Callable[[], None] | None = None,
        spool: Spool | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self._db = db
        self._ledger = ledger
        """The hash chain rows are written through (``proxy.audit_ledger``); None writes
        them unchained (the baseline ``bench/audit_bench.py`` compares with)."""
        self._settings = settings
        self._on_failure = on_failure
        self._spool = spool
        self._pending: deque[tuple[AccessRecord, int | None]] = deque()
        """Rows not yet written, each with the spool segment holding it."""
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.written = 0

    def begin(self, record: AccessRecord) -> None:
        """A response is starting: its provisional row goes to the spool (what the row says
        if the process dies before :meth:`submit`)."""
        if self._spool is not None:
            self._spool.begin(record)

    def submit(self, record: AccessRecord) -> None:
        segment = self._spool.row(record) if self._spool is not None else None
        self._pending.append((record, segment))
        if len(self._pending) >= self._settings.batch_size:
            self._wakeup.set()

    @property
    def backlog(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        """No room for the rows of new requests: they must be refused, not served unlogged."""
        return len(self._pending) >= self._settings.max_buffered or (
            self._spool is not None and self._spool.failed is not None
        )

    def refusal(self) -> OCIError | None:
        """The error a new request gets while the queue is full, else None."""
        if self._spool is not None and self._spool.failed is not None:
            return OCIError(
                Code.UNAVAILABLE,
                "the gatekeeper cannot write its access-log spool (its disk is full or not "
                "writable) and will not serve requests it could lose the record of; try again "
                "shortly",
                {"audit_spool": "failed"},
                headers={"Retry-After": "5"},
            )
        if len(self._pending) < self._settings.max_buffered:
            return None
        return OCIError(
            Code.UNAVAILABLE,
            "the gatekeeper cannot write its access log (database unavailable) and will not "
            "serve requests it cannot record; try again shortly",
            {"audit_buffered": self.backlog, "audit_max_buffered": self._settings.max_buffered},
            headers={"Retry-After": "5"},
        )

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="audit-writer"))
        if self._spool is not None and self._settings.spool_sync_seconds > 0:
            self._tasks.append(asyncio.create_task(self._sync(), name="audit-spool-sync"))

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            # A backlog of a full batch or more (the database just came back) is written at
            # once, batch after batch, instead of one batch per flush interval.
            if not self._closing and len(self._pending) < self._settings.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wakeup.wait(), self._settings.flush_interval_seconds
                    )
                self._wakeup.clear()
            if self._spool is not None:
                self._spool.retry()
            if self._ledger is not None:
                await self._ledger.tick(final=self._closing and not self._pending)
            if not self._pending:
                if self._closing:
                    return
                continue
            if await self.flush_once():
                backoff = 0.1
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _sync(self) -> None:
        assert self._spool is not None
        while True:
            await asyncio.sleep(self._settings.spool_sync_seconds)
            await self._spool.sync()

    async def flush_once(self) -> bool:
        """Write up to one batch; on failure the rows stay queued, in order."""
        batch = [
            self._pending[i] for i in range(min(len(self._pending), self._settings.batch_size))
        ]
        records = [record for record, _ in batch]
        ledger = self._ledger
        # Hashed here, before the write turn, when the chain's head is sure.
        chained = ledger.chained(records) if ledger is not None else None

        async def write(session: AsyncSession) -> Head | None:
            # In the writer thread (storage.writer): the ledger's head is only read there,
            # and moved on here once the rows are committed.
            if chained is not None:
                await audit_chain.insert_rows(session, chained.rows)
                return chained.head
            if ledger is not None:
                return await ledger.insert(session, records)
            await insert_records(session, records)
            return None

        try:
            head = await transact(self._db, write)
        except Exception as exc:  # the database's failure must never lose rows
            log.error("access-log write failed (%d rows kept for retry): %s", len(batch), exc)
            if self._ledger is not None:
                self._ledger.unsure()
            if self._on_failure is not None:
                self._on_failure()
            return False
        if self._ledger is not None and head is not None:
            self._ledger.advance(head)
        for _ in batch:
            self._pending.popleft()
        self.written += len(batch)
        if self._spool is not None:
            self._spool.committed([segment for _, segment in batch])
        return True

    async def close(self, timeout: float = 30.0) -> None:
        """Drain the queue (retrying failures) for up to ``timeout`` seconds, then stop. Rows
        the database did not take stay in the spool for the next start."""
        self._closing = True
        self._wakeup.set()
        if self._tasks:
            try:
                await asyncio.wait_for(self._tasks[0], timeout)
            except TimeoutError:
                log.error("access log: %d rows could not be written at shutdown", self.backlog)
                if self._spool is None and self._settings.json_log:
                    for record, _ in self._pending:
                        access_log.error(json.dumps({"unwritten": record.as_json()}))
            for task in self._tasks[1:]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks.clear()
        if self._spool is not None:
            drained = not self._pending
            self._spool.close(drained=drained)
            if not drained:
                log.error(
                    "access log: %d rows stay in the spool %s; the next start writes them",
                    self.backlog,
                    self._spool.directory,
                )


Emit = Callable[[web.Request, AccessRecord], None]
Admit = Callable[[web.Request], OCIError | None]


def audit_listener(
    writer: AuditWriter, *, json_log: bool
) -> Callable[[VerdictChange], Awaitable[None]]:
    """Verdict changes and admin actions become access-log rows, with actor and reason (and,
    with ``json_log``, JSON lines like every other row)."""

    async def listen(change: VerdictChange) -> None:
        record = AccessRecord(
            time=change.time,
            request_id=uuid.uuid4().hex,
            client_addr=None,
            identity=change.actor,
            method="EVENT",
            path=f"/{change.repository}@{change.digest}",
            action=f"verdict.{change.event}",
            repository=change.repository,
            reference=None,
            digest=change.digest,
            status=200,
            bytes_in=0,
            bytes_out=0,
            duration_ms=0.0,
            upstream_status=None,
            decision=change.new_state,
            reason=change.reason[:2000],
            error_code=None,
        )
        if json_log:
            access_log.info(json.dumps(record.as_json(), separators=(",", ":")))
        writer.submit(record)

    return listen


STARTED: web.RequestKey[float] = web.RequestKey("gatekeeper_audit_started", float)
"""When an admitted, audited request began (its row is being kept)."""
ROW_STATE: web.RequestKey[str] = web.RequestKey("gatekeeper_audit_row", str)
"""``begun`` once its provisional row was spooled, ``emitted`` once its row was."""


def begin_on_prepare(
    begin: Emit,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """``on_response_prepare``: the moment an audited request's answer starts, its row as far
    as it is known goes to ``begin`` (the spool), so a crash before the answer is complete
    cannot lose it. Once per request, and never after its complete row was emitted."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        started = request.get(STARTED)
        if started is None or ROW_STATE in request:
            return
        request[ROW_STATE] = "begun"
        begin(request, _record(request, info(request), response, started))

    return on_prepare


def build_middleware(
    emit: Emit,
    unaudited: frozenset[str],
    admit: Admit | None = None,
    refused: Emit | None = None,
) -> Any:
    """The outermost middleware: times the request and emits its one access-log record.

    ``admit`` may refuse a request before any handler runs (the access-log queue is full); the
    refusal goes to ``refused`` (metrics, log line), never to the full queue.
    """

    @web.middleware
    async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in unaudited:
            return await handler(request)
        started = time.perf_counter()
        record = info(request)
        record.request_id = uuid.uuid4().hex
        refusal = admit(request) if admit is not None else None
        if refusal is not None:
            request[OCI_ERROR] = refusal
            answer = error_response(refusal, head=request.method == "HEAD")
            if refused is not None:
                refused(request, _record(request, record, answer, started))
            return answer
        request[STARTED] = started
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            if not response.prepared:
                # Send it here, not after we return, so the row has the real byte count and
                # duration (sendfile happens inside prepare()) and a send failure is recorded.
                await response.prepare(request)
                await response.write_eof()
            return response
        except ConnectionError:
            # The client hung up (``proxy.errors``): a 499 row with the bytes it was sent.
            # Not re-raised: aiohttp would log a request that failed before sending anything
            # as an ERROR. The connection is closed, so nothing more goes out on it.
            record.client_aborted = True
            if request.transport is not None:
                request.transport.abort()
            return _gone()
        except asyncio.CancelledError:
            record.client_aborted = True
            raise
        finally:
            request[ROW_STATE] = "emitted"
            emit(request, _record(request, record, response, started))

    return audit_middleware


def _gone() -> web.StreamResponse:
    """What the middleware hands aiohttp for a client that is gone: never sent (the
    connection is closed), so aiohttp's own attempt ends quietly."""
    gone = web.Response(status=499)
    gone.force_close()
    return gone


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer, streamed or not, names its access-log row."""
    request_id = info(request).request_id
    if request_id:
        response.headers["X-Request-Id"] = request_id


def _record(
    request: web.Request,
    record: RequestInfo,
    response: web.StreamResponse | None,
    started: float,
) -> AccessRecord:
    err = request.get(OCI_ERROR)
    # 499: the client closed the connection before the answer was complete.
    status = 499 if response is None or record.client_aborted else response.status
    if record.upstream_aborted:
        status = 502
    return AccessRecord(
        time=datetime.now(UTC),
        request_id=record.request_id,
        client_addr=request.remote,
        identity=record.identity,
        method=request.method,
        path=request.path[:2000],
        action=record.action,
        repository=record.repository,
        reference=record.reference,
        digest=record.digest,
        status=status,
        bytes_in=record.bytes_in,
        bytes_out=_bytes_out(request, record, response),
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        upstream_status=record.upstream_status,
        decision=record.decision,
        reason=record.reason or (err.message if err else None),
        error_code=err.code.code if err else None,
    )


def _bytes_out(
    request: web.Request, record: RequestInfo, response: web.StreamResponse | None
) -> int:
    if record.bytes_out is not None:
        return int(record.bytes_out)
    if response is None or request.method == "HEAD":
        return 0
    if isinstance(response, web.FileResponse):
        return response.content_length or 0 if response.status in (200, 206) else 0
    if isinstance(response, web.Response) and response.body is not None:
        body = response.body
        return len(body) if isinstance(body, bytes | bytearray) else response.content_length or 0
    return 0
