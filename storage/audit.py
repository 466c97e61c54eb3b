"""Access-log rows: written in batches by the proxy, read back by ``gatekeeper audit``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage import globs
from storage.models import AccessLog


@dataclass(frozen=True)
class AccessRecord:
    """One request as the access log records it."""

    time: datetime
    request_id: str
    client_addr: str | None
    identity: str
    method: str
    path: str
    action: str
    repository: str | None
    reference: str | None
    digest: str | None
    status: int
    bytes_in: int
    bytes_out: int
    duration_ms: float
    upstream_status: int | None
    decision: str | None
    reason: str | None
    error_code: str | None

    def values(self) -> dict[str, Any]:
        """The fields by name. Every field is a scalar, so a shallow copy: ``asdict`` would
        deep-copy each value, which was a tenth of a manifest GET's CPU (it runs three times
        per request: the JSON log line, the spool's begun and final lines)."""
        return {name: getattr(self, name) for name in _FIELDS}

    def as_json(self) -> dict[str, Any]:
        data = self.values()
        data["time"] = self.time.isoformat()
        return data


_FIELDS = tuple(f.name for f in fields(AccessRecord))


@dataclass(frozen=True)
class AuditQuery:
    """Filters for reading the log back; unset fields do not filter."""

    repository: str | None = None
    identity: str | None = None
    action: str | None = None
    status: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    digest: str | None = None
    limit: int = 100


async def insert_records(session: AsyncSession, records: Sequence[AccessRecord]) -> None:
    """Insert rows, skipping any whose request id is already there: a batch retried after a
    commit whose answer was lost, or a spool replayed after a crash, adds nothing twice."""
    bind = getattr(session, "bind", None)
    dialect = postgresql if bind is not None and bind.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(AccessLog).on_conflict_do_nothing(index_elements=["request_id"])
    await session.execute(statement, [storable(record) for record in records])


def storable(record: AccessRecord) -> dict[str, Any]:
    """The row's values, with NUL characters spelled ``\\x00``: PostgreSQL text cannot hold
    them, and one client-chosen path with ``%00`` in it would otherwise fail its whole batch
    on every retry, stalling the access log (and so, once the buffer fills, every request)."""
    return {
        key: value.replace("\x00", "\\x00") if isinstance(value, str) else value
        for key, value in record.values().items()
    }


async def query_records(
    session: AsyncSession, query: AuditQuery, *, patterns: Sequence[str] | None = None
) -> list[AccessRecord]:
    """Matching rows, oldest first (the newest ``limit`` of them); with ``patterns``, only
    rows about a repository they match (a scoped reader's view: ``limit`` counts those)."""
    stmt = select(AccessLog)
    for column, value in (
        (AccessLog.repository, query.repository),
        (AccessLog.identity, query.identity),
        (AccessLog.action, query.action),
        (AccessLog.status, query.status),
        (AccessLog.digest, query.digest),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if query.since is not None:
        stmt = stmt.where(AccessLog.time >= query.since)
    if query.until is not None:
        stmt = stmt.where(AccessLog.time < query.until)
    if patterns is not None and not globs.everything(patterns):
        stmt = stmt.where(globs.prefilter(AccessLog.repository, patterns))
    else:
        patterns = None
    kept: list[AccessLog] = []
    while True:
        rows = (await session.scalars(stmt.order_by(AccessLog.id.desc()).limit(query.limit))).all()
        kept += [r for r in rows if patterns is None or globs.matches(r.repository, patterns)]
        if len(rows) < query.limit or len(kept) >= query.limit:
            break
        stmt = stmt.where(AccessLog.id < rows[-1].id)  # the filter dropped some: read on
    fields = AccessRecord.__dataclass_fields__
    return [
        AccessRecord(**{name: getattr(row, name) for name in fields})
        for row in reversed(kept[: query.limit])
    ]
