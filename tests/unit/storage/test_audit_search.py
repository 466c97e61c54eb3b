"""The console's access-log search (``storage.audit_search``): keyset pages that neither skip
nor repeat a row, however many rows share an instant; a reader's scope; and on SQLite a plan
that walks the most selective filter's index."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from storage import audit_search
from storage.audit import insert_records
from storage.audit_search import LogFilter
from storage.db import create_engine, sessionmaker, upgrade
from tests.support.audit import record
from tests.support.database import Database

T0 = datetime(2030, 1, 1, tzinfo=UTC)


async def test_pages_cover_every_row_once_newest_first(fresh_db: Database) -> None:
    engine = create_engine(fresh_db.url)
    try:
        await upgrade(engine)
        db = sessionmaker(engine)
        rows = [
            replace(
                record(n),
                time=T0 + timedelta(seconds=n // 4),  # four rows per instant
                repository="team/app" if n % 3 else "other/app",
                identity=f"user-{n % 2}",
            )
            for n in range(41)
        ]
        async with db() as session, session.begin():
            await insert_records(session, rows)
        seen: list[str] = []
        pages = 0
        async for page in audit_search.walk(
            db, LogFilter(identity="user-1"), patterns=["team/*"], size=5
        ):
            pages += 1
            seen += [r.record.request_id for r in page]
        expected = [
            r.request_id
            for r in reversed(rows)
            if r.identity == "user-1" and r.repository == "team/app"
        ]
        assert seen == expected and pages == -(-len(expected) // 5)
    finally:
        await engine.dispose()


@pytest.mark.sqlite_only(reason="about SQLite's query planner without statistics")
async def test_sqlite_walks_the_most_selective_filter_s_index(fresh_db: Database) -> None:
    engine = create_engine(fresh_db.url)
    try:
        await upgrade(engine)
        chosen = LogFilter(identity="user-3", action="manifest.pull", decision="allow", status=200)
        query = audit_search._query(chosen, None, sqlite=True).limit(101)
        sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
        async with engine.connect() as connection:
            plan = " ".join(
                str(row[-1]) for row in await connection.execute(text("EXPLAIN QUERY PLAN " + sql))
            )
        assert "ix_access_log_identity" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # the index gives the order too
    finally:
        await engine.dispose()
