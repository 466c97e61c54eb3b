"""A clock the test moves by hand, for code that takes its clock as an argument: what is idle,
due or expired then depends on the test's steps, not on how long the machine takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """Reads ``now``; ``advance`` moves it by seconds or a ``timedelta``."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: float | timedelta) -> None:
        self.now += by if isinstance(by, timedelta) else timedelta(seconds=by)
