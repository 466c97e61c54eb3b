"""Access-log rows are storable whatever a client put in its request line."""

from __future__ import annotations

from dataclasses import replace

from storage.audit import AuditQuery, insert_records, query_records
from storage.db import create_engine, sessionmaker, upgrade
from tests.support.audit import record
from tests.support.database import Database


async def test_nul_characters_do_not_poison_a_batch(fresh_db: Database) -> None:
    engine = create_engine(fresh_db.url)
    try:
        await upgrade(engine)
        db = sessionmaker(engine)
        hostile = replace(record(1), path="/v2/a\x00b/manifests/v1", reason="x\x00y")
        async with db() as session, session.begin():
            await insert_records(session, [record(0), hostile])
        async with db() as session:
            rows = await query_records(session, AuditQuery())
        assert [r.path for r in rows] == ["/v2/", "/v2/a\\x00b/manifests/v1"]
        assert rows[1].reason == "x\\x00y"
    finally:
        await engine.dispose()
