"""Migration 0019 on a database that already has an access log: request ids become unique, and
the exact duplicates a lost commit answer could leave are folded into one row first."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from storage.db import create_engine, upgrade
from tests.support.database import Database


async def test_duplicate_request_ids_are_folded_and_then_refused(fresh_db: Database) -> None:
    engine = create_engine(fresh_db.url)
    try:
        await upgrade(engine, "0018")
        row = (
            "INSERT INTO access_log (time, request_id, identity, method, path, action, status, "
            "bytes_in, bytes_out, duration_ms) VALUES (:t, :r, 'a', 'GET', '/v2/', 'api.version', "
            "200, 0, 2, 1.0)"
        )
        async with engine.begin() as conn:
            for request_id in ("once", "twice", "twice", "thrice", "thrice", "thrice"):
                await conn.execute(text(row), {"t": datetime.now(UTC), "r": request_id})
        await upgrade(engine)
        async with engine.connect() as conn:
            kept = (
                await conn.execute(text("SELECT request_id, id FROM access_log ORDER BY id"))
            ).all()
        assert [r for r, _ in kept] == ["once", "twice", "thrice"]
        assert [i for _, i in kept] == [1, 2, 4], "the first row of each request id is kept"
        async with engine.begin() as conn:
            refused = await conn.execute(
                text(
                    "INSERT INTO access_log (time, request_id, identity, method, path, action, "
                    "status, bytes_in, bytes_out, duration_ms) VALUES (:t, 'once', 'a', 'GET', "
                    "'/v2/', 'api.version', 200, 0, 2, 1.0) ON CONFLICT (request_id) DO NOTHING"
                ),
                {"t": datetime.now(UTC)},
            )
            assert refused.rowcount == 0
    finally:
        await engine.dispose()
