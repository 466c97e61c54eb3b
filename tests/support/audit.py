"""Inputs for the access-log writer's unit tests: a plain access-log row and a database
stand-in whose transactions fail on demand."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from storage.audit import AccessRecord
from storage.errors import DatabaseUnavailable


def record(n: int) -> AccessRecord:
    """An access-log row for ``GET /v2/`` told apart from others only by ``request_id`` ``r<n>``."""
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
                    raise DatabaseUnavailable("ConnectionRefusedError: database down")
                yield

            async def execute(self, _stmt: Any, rows: list[dict[str, Any]]) -> None:
                db.rows.extend(rows)

        return Session()
