"""Verdict queries on a real SQLite database."""

from __future__ import annotations

from typing import Any

from storage import verdicts

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64


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
