"""The access-log writer never drops a row: failed batches stay queued, shutdown drains."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from config.settings import AuditSettings
from proxy.audit import AuditWriter
from storage.audit import AccessRecord


def record(n: int) -> AccessRecord:
    return AccessRecord(
        time=datetime.now(UTC),
        request_id=f"r{n}",
        client_addr=None,
        identity="anonymous",
        method="GET",
        path="/v2/",
        action="api.version",
        repository=None,
        reference=None,
        digest=None,
        status=200,
        bytes_in=0,
        bytes_out=2,
        duration_ms=1.0,
        upstream_status=200,
        decision=None,
        reason=None,
        error_code=None,
    )


class FlakyDatabase:
    """A sessionmaker stand-in whose first ``failures`` transactions fail."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rows: list[dict[str, Any]] = []

    def __call__(self) -> Any:
        db = self

        class Session:
            async def __aenter__(self) -> Session:
                return self

            async def __aexit__(self, *exc: object) -> None:
                return None

            @asynccontextmanager
            async def begin(self) -> Any:
                if db.failures:
                    db.failures -= 1
                    raise ConnectionError("database down")
                yield

            async def execute(self, _stmt: Any, rows: list[dict[str, Any]]) -> None:
                db.rows.extend(rows)

        return Session()


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
