"""Login throttling on the shared counters: the same answers from every replica."""

from __future__ import annotations

from typing import Any

import pytest

from config.auth import AuthSettings
from proxy.auth.ratelimit import LoginThrottle
from tests.fakes.clock import Clock

SETTINGS = AuthSettings(
    failures_per_address=10,
    failures_per_identity=3,
    identity_slowdown_after=5,
    failure_window_seconds=60,
    max_backoff_seconds=8,
)


async def test_a_pair_is_blocked_on_every_replica_with_doubling_backoff(db: Any) -> None:
    clock = Clock()
    one, two = LoginThrottle(SETTINGS, db, clock), LoginThrottle(SETTINGS, db, clock)
    await one.failed("alice", "10.0.0.9")
    await two.failed("alice", "10.0.0.9")
    assert await one.refused_for("alice", "10.0.0.9") == 0
    await one.failed("alice", "10.0.0.9")  # third failure, counted across both replicas
    assert await two.refused_for("alice", "10.0.0.9") == 1.0
    # Another address for the same identity is not refused: the owner still gets in.
    assert await two.refused_for("alice", "10.0.0.1") == 0
    clock.advance(1.5)
    assert await one.refused_for("alice", "10.0.0.9") == 0
    await two.failed("alice", "10.0.0.9")
    assert await one.refused_for("alice", "10.0.0.9") == 2.0
    for _ in range(6):
        await one.failed("alice", "10.0.0.9")
    assert await one.refused_for("alice", "10.0.0.9") == 8.0  # capped at max_backoff_seconds


async def test_success_clears_the_pair_and_windows_run_out(db: Any) -> None:
    clock = Clock()
    throttle = LoginThrottle(SETTINGS, db, clock)
    for _ in range(2):
        await throttle.failed("bob", "10.0.0.2")
    await throttle.succeeded("bob", "10.0.0.2")
    await throttle.failed("bob", "10.0.0.2")
    assert await throttle.refused_for("bob", "10.0.0.2") == 0  # the count started over
    clock.advance(61)
    for _ in range(2):
        await throttle.failed("bob", "10.0.0.2")
    assert await throttle.refused_for("bob", "10.0.0.2") == 0  # the old failure is outside


async def test_an_identity_attacked_from_many_addresses_is_slowed_not_blocked(db: Any) -> None:
    clock = Clock()
    throttle = LoginThrottle(SETTINGS, db, clock)
    for n in range(7):
        await throttle.failed("carol", f"10.1.0.{n}")
    assert await throttle.slowdown_for("carol") == pytest.approx(0.2)  # 2 over the threshold
    assert await throttle.refused_for("carol", "10.9.9.9") == 0
    assert await throttle.slowdown_for("dave") == 0


async def test_any_login_name_is_a_valid_key(db: Any) -> None:
    """Login names come from the client: NUL bytes and huge names must not break the store."""
    throttle = LoginThrottle(SETTINGS, db, Clock())
    for name in ("nul\0name", "x" * 5000, "\udcff"):
        for _ in range(3):
            await throttle.failed(name, "10.2.0.1")
        assert await throttle.refused_for(name, "10.2.0.1") == 1.0
