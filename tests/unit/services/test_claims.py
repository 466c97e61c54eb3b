"""Workers of one process that one wake-up woke together take turns to claim (``services.
verification``): one queued job costs one claiming write, not one per worker (each would take
SQLite's write lock, delaying the job's own writes and the pull waiting for it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from config.settings import load_settings
from services.events import EventBus
from services.policybook import load_book
from services.verification import VerificationService
from storage import jobs
from storage.db import create_engine, sessionmaker, upgrade
from storage.writer import close
from tests.support.database import Database
from upstream.client import Upstream


@pytest.fixture
async def service(fresh_db: Database) -> AsyncIterator[tuple[VerificationService, list[str]]]:
    settings = load_settings(env={"GATEKEEPER_DATABASE_URL": fresh_db.url})
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    db = sessionmaker(engine)
    claims: list[str] = []

    def _seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # A claim's write: the UPDATE taking a job (storage.jobs._take). What to take is read
        # before it, outside any write transaction; a worker that reads after another's claim
        # finds nothing and writes nothing.
        if statement.startswith("UPDATE jobs SET state") and "lease_owner" in statement:
            claims.append(statement)

    # Every engine's statements: the claim runs in the writer thread, on its own engine.
    event.listen(Engine, "before_cursor_execute", _seen)
    book = await load_book(db, settings.policies)
    try:
        yield VerificationService(settings, db, cast(Upstream, None), [], EventBus(), book), claims
    finally:
        event.remove(Engine, "before_cursor_execute", _seen)
        await close(engine)


async def test_workers_woken_together_claim_one_job_once(
    service: tuple[VerificationService, list[str]],
) -> None:
    verification, claims = service
    async with verification.db() as session, session.begin():
        await jobs.enqueue(session, "verify", "team/app", "sha256:" + "a" * 64, "t", identity="t")
    claims.clear()
    taken = await asyncio.gather(*(verification._claim(3) for _ in range(4)))
    assert len([job for job in taken if job is not None]) == 1
    assert len(claims) == 1
