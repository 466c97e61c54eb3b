"""The access-log writer never drops a row: failed batches stay queued, shutdown drains."""

from __future__ import annotations

import logging

import pytest

from config.settings import AuditSettings
from proxy.audit import AuditWriter, audit_listener
from services.events import VerdictChange
from tests.fakes.database import FlakyDatabase
from tests.support.audit import record


async def test_failed_batches_are_retried_in_order() -> None:
    db = FlakyDatabase(failures=3)
    failures: list[int] = []
    writer = AuditWriter(
        db,  # type: ignore[arg-type]
        AuditSettings(flush_interval_seconds=0.01, batch_size=2),
        lambda: failures.append(1),
    )
    writer.start()
    for n in range(5):
        writer.submit(record(n))
    await writer.close(timeout=10)
    assert [row["request_id"] for row in db.rows] == [f"r{n}" for n in range(5)]
    assert writer.backlog == 0
    assert len(failures) == 3  # each failed batch counted (gatekeeper_audit_write_failures)


async def test_close_with_nothing_queued_returns_promptly() -> None:
    db = FlakyDatabase(failures=0)
    writer = AuditWriter(db, AuditSettings(flush_interval_seconds=5))  # type: ignore[arg-type]
    writer.start()
    await writer.close(timeout=2)
    assert db.rows == []


@pytest.mark.parametrize("json_log", [True, False])
async def test_json_log_governs_verdict_lines(
    json_log: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Verdict changes are rows like requests: printed as JSON only with ``json_log``, and
    recorded either way."""
    writer = AuditWriter(FlakyDatabase(failures=0), AuditSettings())  # type: ignore[arg-type]
    listen = audit_listener(writer, json_log=json_log)
    with caplog.at_level(logging.INFO, logger="gatekeeper.access"):
        await listen(
            VerdictChange("passed", "team/app", "sha256:" + "a" * 64, None, "passed", "gk", "ok")
        )
    printed = [r for r in caplog.records if r.name == "gatekeeper.access"]
    assert len(printed) == (1 if json_log else 0)
    assert writer.backlog == 1
