"""The "try again in about N s" a pull gets when its hold ran out (``services.eta``): from the
image's size, this process's measured throughput, the job's progress and the queue before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.eta import MIN_WAIT, MiB, Throughput, estimate, span
from storage.jobs import Progress

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def measured(rate: float, seconds: float) -> Throughput:
    speed = Throughput()
    for _ in range(40):  # long enough for the moving averages to settle
        speed.observe(int(rate * seconds), seconds)
    return speed


def test_a_running_verification_has_what_its_size_still_needs() -> None:
    speed = measured(10 * MiB, 20.0)
    assert abs(speed.rate - 10 * MiB) < MiB and abs(speed.seconds - 20.0) < 1
    started = Progress("running", NOW - timedelta(seconds=30), 0)
    guess = estimate(started, 1000 * MiB, speed, 2, NOW)  # ~100 s in all, 30 s done
    assert 60 <= guess.seconds <= 90
    assert "running for 30 s" in guess.status


def test_a_verification_that_overran_its_estimate_says_a_few_seconds() -> None:
    late = Progress("running", NOW - timedelta(minutes=10), 0)
    guess = estimate(late, 10 * MiB, measured(10 * MiB, 1.0), 2, NOW)
    assert guess.seconds == MIN_WAIT and "running for 10m 00s" in guess.status


def test_a_queued_verification_waits_for_those_ahead_of_it_shared_by_the_workers() -> None:
    speed = measured(10 * MiB, 20.0)
    alone = estimate(Progress("queued", NOW, 0), 10 * MiB, speed, 2, NOW)
    behind = estimate(Progress("queued", NOW, 6), 10 * MiB, speed, 2, NOW)
    assert behind.seconds - alone.seconds >= 6 * 20 / 2 - 30  # ~60 s more, rounded
    assert "queued behind 6 other(s)" in behind.status


def test_small_images_say_nothing_of_the_rate() -> None:
    speed = Throughput()
    before = speed.rate
    speed.observe(1000, 0.5)
    assert speed.rate == before and speed.seconds < 10


def test_estimates_are_rounded_for_a_person() -> None:
    speed = measured(10 * MiB, 20.0)
    for size in (0, 5 * MiB, 300 * MiB, 3000 * MiB):
        seconds = estimate(Progress("running", NOW, 0), size, speed, 1, NOW).seconds
        assert seconds >= MIN_WAIT and seconds % (5 if seconds <= 60 else 30) == 0


def test_spans() -> None:
    shown = [span(s) for s in (0, 59, 60, 130, 3700)]
    assert shown == ["0 s", "59 s", "1m 00s", "2m 10s", "1h 01m"]
