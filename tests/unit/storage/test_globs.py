"""Listings filtered by repository globs (``storage.globs``): the database narrows with LIKE,
Python decides with fnmatch, and a limit counts matching rows even when the SQL filter could
only approximate the globs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from storage import globs, verdicts
from storage.audit import AccessRecord, AuditQuery, insert_records, query_records
from storage.verdicts import DecisionRecord
from verifiers.lifecycle import State

REPOSITORIES = ["team/a", "team/b", "team_x/a", "teamx/a", "other/a", "team/c"]


def record(repository: str | None, moment: datetime) -> AccessRecord:
    return AccessRecord(
        time=moment,
        request_id=f"r-{repository}",  # one row per request id (uq_access_log_request_id)
        client_addr=None,
        identity="x",
        method="GET",
        path="/",
        action="manifest.pull",
        repository=repository,
        reference=None,
        digest=None,
        status=200,
        bytes_in=0,
        bytes_out=0,
        duration_ms=0.0,
        upstream_status=None,
        decision=None,
        reason=None,
        error_code=None,
    )


async def seed(db: Any) -> None:
    decision = DecisionRecord(
        state=State.PASSED,
        reasons=(),
        policy="p",
        policy_version="v",
        data_versions={},
        outcomes=(),
    )
    start = datetime.now(UTC)
    async with db() as session, session.begin():
        for repository in REPOSITORIES:
            await verdicts.record_decision(session, repository, "sha256:" + "a" * 64, decision)
        await insert_records(
            session,
            [record(r, start + timedelta(seconds=n)) for n, r in enumerate([*REPOSITORIES, None])],
        )


async def test_listings_keep_exactly_the_matching_repositories(db: Any) -> None:
    await seed(db)
    cases = {
        ("team/*",): {"team/a", "team/b", "team/c"},
        ("team_x/*",): {"team_x/a"},  # "_" is a literal, not LIKE's any-character
        ("team/[ab]",): {"team/a", "team/b"},  # approximated in SQL, decided in Python
        ("team?x/*",): {"team_x/a"},
        ("tea?/?",): {"team/a", "team/b", "team/c"},
        ("*",): set(REPOSITORIES),
        (): set(),
    }
    async with db() as session:
        for patterns, expected in cases.items():
            found = await verdicts.list_verdicts(session, limit=100, patterns=list(patterns))
            assert {v.repository for v in found} == expected, patterns
            rows = await query_records(session, AuditQuery(limit=100), patterns=list(patterns))
            # A global reader also sees the rows about no repository (logins, the catalog).
            unscoped = {None} if patterns == ("*",) else set()
            assert {r.repository for r in rows} == expected | unscoped, patterns


async def test_a_limit_counts_matching_rows_when_sql_only_approximates(db: Any) -> None:
    """``team/[c]`` reaches SQL as ``team/%``: the newest rows it lets through are dropped in
    Python, and the reader goes on until it has the one that matches."""
    await seed(db)
    async with db() as session:
        found = await verdicts.list_verdicts(session, limit=1, patterns=["team/[a]"])
        assert [v.repository for v in found] == ["team/a"]
        rows = await query_records(session, AuditQuery(limit=1), patterns=["team/[a]"])
        assert [r.repository for r in rows] == ["team/a"]
        rows = await query_records(session, AuditQuery(limit=2), patterns=["team/*"])
        assert [r.repository for r in rows] == ["team/b", "team/c"]  # the newest two, in order


def test_everything_is_a_pattern_of_stars() -> None:
    assert globs.everything(["team/*", "*"]) and not globs.everything(["team/*", "?"])
