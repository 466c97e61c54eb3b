"""The policies a serving process holds (``services.live_policies``): a waiver another replica
stores, or one that expires, reaches this process's snapshot within a refresh, and the verdicts
it touches are decided again without anyone asking."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from config.policy import Policy
from services.events import VerdictChange
from services.live_policies import LivePolicies
from storage import verdicts, waivers
from storage.verdicts import DecisionRecord, FindingRecord
from verifiers.lifecycle import State

POLICY = Policy(name="team", repositories=["team/*"], require=["scan"])
DIGEST = "sha256:" + "c" * 64


async def seed(db: Any) -> None:
    record = DecisionRecord(
        state=State.QUARANTINED,
        reasons=("1 critical (CVE-1)",),
        policy=POLICY.name,
        policy_version=POLICY.version,
        data_versions={"scan": "1"},
        outcomes=({"verifier": "scan", "version": "1", "status": "ok", "detail": ""},),
        findings=(FindingRecord("scan", "CVE-1", "critical", "bad"),),
    )
    async with db() as session, session.begin():
        await verdicts.record_decision(session, "team/app", DIGEST, record)


async def eventually(db: Any, wanted: State, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with db() as session:
            found = await verdicts.get(session, "team/app", DIGEST)
        assert found is not None
        if found.state == wanted:
            return
        assert time.monotonic() < deadline, f"still {found.state}"
        await asyncio.sleep(0.05)


def collector() -> tuple[list[VerdictChange], Callable[[VerdictChange], Any]]:
    seen: list[VerdictChange] = []

    async def publish(change: VerdictChange) -> None:
        seen.append(change)

    return seen, publish


async def test_another_replicas_waiver_and_its_expiry_are_applied_here(db: Any) -> None:
    await seed(db)
    seen, publish = collector()
    live = LivePolicies([POLICY], db, publish, refresh_seconds=0.05)
    await live.refresh()
    assert live.match("team/app") is POLICY
    live.start()
    try:
        ends = datetime.now(UTC) + timedelta(seconds=1.5)
        async with db() as session, session.begin():  # as the other replica's API does
            await waivers.add(
                session,
                finding="CVE-1",
                scope="team/*",
                reason="accepted",
                author="tina",
                expires_at=ends,
            )
        await eventually(db, State.PASSED)
        assert [w.finding for w in live.match("team/app").waivers] == ["CVE-1"]
        await eventually(db, State.QUARANTINED)  # it expired
        assert live.match("team/app").waivers == []
    finally:
        await live.close()
    assert [(c.event, c.reason.split(" (policy")[0]) for c in seen] == [
        ("passed", "waivers changed"),
        ("quarantined", "waivers changed"),
    ]
