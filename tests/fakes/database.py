"""A database stand-in whose transactions fail on demand, for the access-log writer's tests."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from storage.errors import DatabaseUnavailable


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
