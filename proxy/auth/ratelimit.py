"""Failed-login throttling, per client address and per identity, with back-off.

Three keys, so that one attacker cannot lock the owner out: an address that keeps failing is
refused (429) for a doubling period; an (identity, address) pair that keeps failing is refused
likewise; an identity failing from many addresses is only slowed down, so its owner, from an
address of their own, still gets in. State is per process (a replica throttles what it sees).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from config.auth import AuthSettings


@dataclass
class _Window:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0
    strikes: int = 0


class LoginThrottle:
    def __init__(self, settings: AuthSettings, clock: Callable[[], float] | None = None) -> None:
        self._settings = settings
        self._windows: dict[tuple[str, ...], _Window] = {}
        self._clock = clock or time.monotonic

    def _window(self, key: tuple[str, ...]) -> _Window:
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) > 100_000:  # bound memory under a spray of addresses
                self._windows.clear()
            window = self._windows[key] = _Window()
        moment = self._clock()
        horizon = moment - self._settings.failure_window_seconds
        while window.failures and window.failures[0] < horizon:
            window.failures.popleft()
        return window

    def refused_for(self, identity: str, address: str) -> float:
        """Seconds the attempt must wait before it may be tried; 0 when allowed."""
        moment = self._clock()
        waits = [
            self._window(key).blocked_until - moment
            for key in (("addr", address), ("pair", identity, address))
        ]
        return max(0.0, *waits)

    def slowdown_for(self, identity: str) -> float:
        """Delay before checking a password of a much-attacked identity (seconds)."""
        window = self._window(("id", identity))
        excess = len(window.failures) - self._settings.identity_slowdown_after
        return 0.0 if excess < 0 else min(0.05 * 2 ** min(excess, 10), 2.0)

    def failed(self, identity: str, address: str) -> None:
        moment = self._clock()
        limits = {
            ("addr", address): self._settings.failures_per_address,
            ("pair", identity, address): self._settings.failures_per_identity,
            ("id", identity): None,
        }
        for key, limit in limits.items():
            window = self._window(key)
            window.failures.append(moment)
            if limit is not None and len(window.failures) >= limit:
                window.strikes += 1
                backoff = min(2.0 ** (window.strikes - 1), self._settings.max_backoff_seconds)
                window.blocked_until = moment + backoff

    def succeeded(self, identity: str, address: str) -> None:
        self._windows.pop(("pair", identity, address), None)
