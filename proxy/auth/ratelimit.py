"""Failed-login throttling, per client address and per identity, with back-off.

Three keys, so that one attacker cannot lock the owner out: an address that keeps failing is
refused (429) for a doubling period; an (identity, address) pair that keeps failing is refused
likewise; an identity failing from many addresses is only slowed down, so its owner, from an
address of their own, still gets in. The counters live in the database (``storage.
login_throttle``), so every replica behind a load balancer throttles the same attacker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.auth import AuthSettings
from storage import login_throttle
from storage.timeutil import now


def _key(kind: str, *parts: str) -> str:
    """A fixed-size key: login names are attacker-chosen (any length, NUL bytes, ...)."""
    digest = hashlib.sha256(json.dumps(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}:{digest}"


def _address(address: str) -> str:
    return _key("addr", address)


def _pair(identity: str, address: str) -> str:
    return _key("pair", identity, address)


def _identity(identity: str) -> str:
    return _key("id", identity)


class LoginThrottle:
    """The login path's questions about past failures, answered from the shared counters."""

    def __init__(
        self,
        settings: AuthSettings,
        db: async_sessionmaker[Any],
        clock: Callable[[], datetime] = now,
    ) -> None:
        self._settings = settings
        self._db = db
        self._clock = clock
        self._window = timedelta(seconds=settings.failure_window_seconds)

    async def refused_for(self, identity: str, address: str) -> float:
        """Seconds the attempt must wait before it may be tried; 0 when allowed."""
        moment = self._clock()
        keys = [_address(address), _pair(identity, address)]
        async with self._db() as session:
            counters = await login_throttle.read(session, keys, moment, self._window)
        waits = [
            (c.blocked_until - moment).total_seconds()
            for c in counters.values()
            if c.blocked_until is not None
        ]
        return max([0.0, *waits])

    async def slowdown_for(self, identity: str) -> float:
        """Delay before checking a password of a much-attacked identity (seconds)."""
        key = _identity(identity)
        async with self._db() as session:
            counters = await login_throttle.read(session, [key], self._clock(), self._window)
        failures = counters[key].failures if key in counters else 0
        excess = failures - self._settings.identity_slowdown_after
        return 0.0 if excess < 0 else min(0.05 * 2 ** min(excess, 10), 2.0)

    async def failed(self, identity: str, address: str) -> None:
        settings = self._settings
        moment = self._clock()
        backoff = timedelta(seconds=settings.max_backoff_seconds)
        limits = {
            _address(address): settings.failures_per_address,
            _pair(identity, address): settings.failures_per_identity,
            _identity(identity): None,
        }
        async with self._db() as session, session.begin():
            await login_throttle.prune(session, moment, self._window)
            # Sorted: two replicas recording failures lock the rows in the same order.
            for key in sorted(limits):
                await login_throttle.record_failure(
                    session, key, limits[key], moment, self._window, backoff
                )

    async def succeeded(self, identity: str, address: str) -> None:
        async with self._db() as session, session.begin():
            await login_throttle.forget(session, _pair(identity, address))
