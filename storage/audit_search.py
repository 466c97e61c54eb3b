"""The console's access-log search: filters on identity, repository, action, decision, status
and a time range, newest first, a keyset page at a time over ``(time, id)``.

Each equality filter has an index that leads with its column and continues with ``time``
(migrations 0001 and 0018), so a page is an index range read however large the log is; ``id``
breaks ties between rows of the same instant. Exports walk the same pages to the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import globs
from storage.audit import AccessRecord
from storage.keyset import Page, read_page
from storage.models import AccessLog

FIELDS = tuple(AccessRecord.__dataclass_fields__)


@dataclass(frozen=True)
class LogFilter:
    """What the search matches; unset fields do not filter."""

    identity: str | None = None
    repository: str | None = None
    action: str | None = None
    decision: str | None = None
    status: int | None = None
    digest: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class LogRow:
    """One access-log row and its id (the tie-breaker of the keyset)."""

    id: int
    record: AccessRecord


Cursor = tuple[datetime, int]


SELECTIVE = ("identity", "repository", "digest", "action", "decision", "status")
"""Filter columns from the most to the least selective in a real log: hundreds of identities
and repositories, a handful of actions, three decisions."""


def _query(f: LogFilter, patterns: Sequence[str] | None, *, sqlite: bool) -> Any:
    """The search, newest first. SQLite plans without statistics (nobody runs ``ANALYZE``)
    and, given several equality filters, may walk the index of the least selective one (a
    million ``allow`` rows to find a hundred of one identity); there, every filter but the
    most selective is written so that no index serves it (``action || ''``), which leaves
    the planner the one good choice. PostgreSQL has statistics and gets plain comparisons."""
    query = select(AccessLog)
    chosen = [(name, getattr(f, name)) for name in SELECTIVE if getattr(f, name) is not None]
    for position, (name, value) in enumerate(chosen):
        column: Any = getattr(AccessLog, name)
        if sqlite and position > 0:
            column = column + 0 if name == "status" else column.concat("")
        query = query.where(column == value)
    if f.since is not None:
        query = query.where(AccessLog.time >= f.since)
    if f.until is not None:
        query = query.where(AccessLog.time < f.until)
    if patterns is not None and not globs.everything(patterns):
        query = query.where(globs.prefilter(AccessLog.repository, patterns))
    return query.order_by(AccessLog.time.desc(), AccessLog.id.desc())


def _row(row: AccessLog) -> LogRow:
    return LogRow(row.id, AccessRecord(**{name: getattr(row, name) for name in FIELDS}))


def cursor_of(row: LogRow) -> Cursor:
    return (row.record.time, row.id)


async def search(
    session: AsyncSession,
    f: LogFilter,
    *,
    patterns: Sequence[str] | None,
    after: Cursor | None,
    limit: int,
) -> Page[LogRow]:
    """One page, newest first, of the rows after ``after`` that ``patterns`` may read."""
    base = _query(f, patterns, sqlite=session.get_bind().dialect.name == "sqlite")

    async def fetch(last: LogRow | None, n: int) -> list[LogRow]:
        position = cursor_of(last) if last is not None else after
        query = base
        if position is not None:
            query = query.where(tuple_(AccessLog.time, AccessLog.id) < tuple_(*position))
        return [_row(r) for r in (await session.scalars(query.limit(n))).all()]

    return await read_page(fetch, lambda r: r.record.repository, patterns, limit)


async def walk(
    db: async_sessionmaker[Any], f: LogFilter, *, patterns: Sequence[str] | None, size: int = 1000
) -> AsyncIterator[list[LogRow]]:
    """Every matching row, newest first, a page at a time, each page in its own short session
    (an export of a million rows never holds a transaction open)."""
    after: Cursor | None = None
    while True:
        async with db() as session:
            page = await search(session, f, patterns=patterns, after=after, limit=size)
        if page.rows:
            yield page.rows
        if not page.more:
            return
        after = cursor_of(page.rows[-1])
