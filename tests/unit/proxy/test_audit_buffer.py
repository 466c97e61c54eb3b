"""The access-log buffer is bounded: once full, requests are refused (503), never served
unrecorded, and the rows already queued are all written when the database returns."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from config.settings import AuditSettings
from oci.errors import OCIError
from proxy.audit import AuditWriter, build_middleware
from storage.audit import AccessRecord
from tests.fakes.database import FlakyDatabase
from tests.support.audit import record


async def test_a_full_buffer_refuses_and_recovers_without_loss() -> None:
    db = FlakyDatabase(failures=10**9)
    writer = AuditWriter(
        db,  # type: ignore[arg-type]
        AuditSettings(flush_interval_seconds=0.01, batch_size=2, max_buffered=5),
    )
    writer.start()
    for n in range(4):
        writer.submit(record(n))
    assert writer.refusal() is None
    writer.submit(record(4))
    refusal = writer.refusal()
    assert refusal is not None
    assert refusal.code.status == 503 and refusal.code.code == "UNAVAILABLE"
    assert refusal.detail == {"audit_buffered": 5, "audit_max_buffered": 5}
    writer.submit(record(5))  # a request in flight still gets its row
    db.failures = 0
    await writer.close(timeout=10)
    assert [row["request_id"] for row in db.rows] == [f"r{n}" for n in range(6)]
    assert writer.refusal() is None


async def test_a_big_backlog_drains_without_waiting_per_batch() -> None:
    db = FlakyDatabase(failures=0)
    writer = AuditWriter(
        db,  # type: ignore[arg-type]
        AuditSettings(flush_interval_seconds=5, batch_size=10),
    )
    for n in range(1000):
        writer.submit(record(n))
    writer.start()
    async with asyncio.timeout(3):  # one batch per 5 s interval would take 500 s
        while writer.backlog:
            await asyncio.sleep(0.01)
    await writer.close(timeout=1)
    assert len(db.rows) == 1000


async def test_the_middleware_answers_refusals_with_an_envelope() -> None:
    emitted: list[AccessRecord] = []
    refused: list[AccessRecord] = []
    full = True

    def admit(_request: web.Request) -> OCIError | None:
        writer = AuditWriter(None, AuditSettings(max_buffered=1))  # type: ignore[arg-type]
        if full:
            writer.submit(record(0))
        return writer.refusal()

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(
        middlewares=[
            build_middleware(
                lambda _r, rec: emitted.append(rec),
                frozenset(),
                admit,
                lambda _r, rec: refused.append(rec),
            )
        ]
    )
    app.router.add_get("/v2/", handler)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.get("/v2/")
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        error = json.loads(await resp.read())["errors"][0]
        assert error["code"] == "UNAVAILABLE" and "access log" in error["message"]
        assert emitted == [] and [r.status for r in refused] == [503]
        full = False
        assert (await client.get("/v2/")).status == 200
        assert [r.status for r in emitted] == [200]
    finally:
        await client.close()
