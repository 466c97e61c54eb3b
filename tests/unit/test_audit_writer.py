"""The access-log writer never drops a row: failed batches stay queued, shutdown drains."""

from __future__ import annotations

from config.settings import AuditSettings
from proxy.audit import AuditWriter
from tests.support.audit import FlakyDatabase, record


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
