"""Inputs for the access-log writer's unit tests: a plain access-log row (the database
stand-in whose transactions fail on demand is ``tests/fakes/database.py``)."""

from __future__ import annotations

from datetime import UTC, datetime

from storage.audit import AccessRecord


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
