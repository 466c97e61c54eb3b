"""Verdict queries on a real SQLite database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage import verdicts
from storage.db import create_engine, sessionmaker, upgrade
from tests.support.database import Database

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


@pytest.fixture
async def db(fresh_db: Database) -> AsyncIterator[Any]:
    engine = create_engine(fresh_db.url)
    await upgrade(engine)
    yield sessionmaker(engine)
    await engine.dispose()


async def test_by_digest_finds_the_digest_in_every_repository(db: Any) -> None:
    async with db() as session, session.begin():
        for repository, digest in (
            ("team/web", DIGEST),
            ("app/x", DIGEST),
            ("sigs/app", DIGEST),
            ("app/x", OTHER),
        ):
            await verdicts.ensure_pending(session, repository, digest, "test", "pushed")
    async with db() as session:
        found = await verdicts.by_digest(session, DIGEST)
        assert [(v.repository, v.digest) for v in found] == [
            ("app/x", DIGEST),
            ("sigs/app", DIGEST),
            ("team/web", DIGEST),
        ]
        assert [v.repository for v in await verdicts.by_digest(session, DIGEST, limit=2)] == [
            "app/x",
            "sigs/app",
        ]
        assert await verdicts.by_digest(session, "sha256:" + "c" * 64) == []
