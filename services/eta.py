"""Roughly how long an image still needs before it is decided, for the pull whose hold ran out.

A pull of an image still being verified is held for a while (``proxy.gate``); when the hold
runs out the client is told to come back, and "try again shortly" leaves a person at a
terminal guessing. The estimate comes from what the gatekeeper knows: how many bytes the
image's blobs hold (its indexed manifest), how fast this process has been verifying lately
(bytes per second, an exponential moving average over verifications large enough to say), how
long the verification has been running, and how many verifications were queued before it. It
is a figure for a person, never a promise: it is rounded, and never below a few seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from storage.jobs import Progress

MiB = 1024 * 1024
DEFAULT_RATE = 20.0 * MiB
"""Bytes per second before this process has measured its own: a layer fetched by the registry
from a remote over the internet and scanned as it streams."""
DEFAULT_SECONDS = 10.0
"""One verification, before any was measured (and for an image of unknown size)."""
MIN_WAIT = 5
"""Never "try again in 0 s": the verdict still has to be written and the client to come back."""
_SMOOTHING = 0.3


class Throughput:
    """How fast this process verifies: bytes per second and seconds per verification, each an
    exponential moving average of recent verifications."""

    def __init__(self) -> None:
        self.rate = DEFAULT_RATE
        self.seconds = DEFAULT_SECONDS

    def observe(self, size: int | None, seconds: float) -> None:
        """One finished verification of ``size`` bytes. Small images say nothing of the rate
        (their time is mostly fixed costs) but count for the time per verification."""
        if seconds <= 0:
            return
        self.seconds += _SMOOTHING * (seconds - self.seconds)
        if size is not None and size >= MiB:
            self.rate += _SMOOTHING * (size / seconds - self.rate)


@dataclass(frozen=True)
class Estimate:
    """What a pull is told: how long until it is worth trying again, and what is happening."""

    seconds: int
    status: str
    """``its verification has been running for 2m 10s``, ``queued behind 3 others``."""


def estimate(
    progress: Progress | None,
    size: int | None,
    throughput: Throughput,
    workers: int,
    moment: datetime,
) -> Estimate:
    """The time left for an image of ``size`` bytes whose verification is at ``progress``."""
    expected = throughput.seconds if size is None else size / throughput.rate + 2.0
    if progress is None:
        return Estimate(_rounded(expected), "its verification is about to be queued")
    elapsed = max((moment - progress.since).total_seconds(), 0.0)
    if progress.state == "running":
        left = expected - elapsed
        return Estimate(_rounded(left), f"its verification has been running for {span(elapsed)}")
    if progress.state == "queued":
        wait = progress.ahead * throughput.seconds / max(workers, 1)
        ahead = f"queued behind {progress.ahead} other(s)" if progress.ahead else "queued"
        return Estimate(_rounded(wait + expected), f"{ahead} for {span(elapsed)}")
    return Estimate(MIN_WAIT, "its verification has just ended")


def _rounded(seconds: float) -> int:
    """Whole seconds, in steps a person reads at a glance: 5 s up to a minute, then 30 s."""
    step = 5 if seconds < 60 else 30
    return max(MIN_WAIT, int(math.ceil(seconds / step) * step))


def span(seconds: float) -> str:
    """``45 s``, ``2m 10s``, ``1h 5m``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
