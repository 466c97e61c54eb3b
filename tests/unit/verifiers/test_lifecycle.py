"""The verdict lifecycle's rules: hold > release > verdict, expiry, and pending never taking a
settled state away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from verifiers import lifecycle
from verifiers.lifecycle import State

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_pullable_states() -> None:
    assert {State.PASSED, State.RELEASED} == lifecycle.PULLABLE
    assert lifecycle.pullable("passed")
    assert not lifecycle.pullable("quarantined") and not lifecycle.pullable("pending")


def test_a_release_counts_until_it_expires() -> None:
    later, earlier = NOW + timedelta(minutes=1), NOW - timedelta(seconds=1)
    assert lifecycle.effective("released", later, NOW) == State.RELEASED
    assert lifecycle.effective("released", None, NOW) == State.RELEASED
    assert lifecycle.effective("released", earlier, NOW) == State.QUARANTINED
    assert lifecycle.effective("released", NOW, NOW) == State.QUARANTINED


@pytest.mark.parametrize(
    ("current", "decided", "held", "released", "expected"),
    [
        (None, State.PASSED, False, False, State.PASSED),
        ("passed", State.QUARANTINED, False, False, State.QUARANTINED),
        ("released", State.QUARANTINED, False, True, State.RELEASED),
        ("released", State.PASSED, False, True, State.PASSED),
        ("quarantined", State.PASSED, True, False, State.QUARANTINED),
        ("released", State.PASSED, True, True, State.QUARANTINED),
        ("passed", State.PENDING, False, False, State.PASSED),
        (None, State.PENDING, False, False, State.PENDING),
        ("pending", State.PENDING, False, False, State.PENDING),
        ("released", State.PENDING, False, True, State.RELEASED),
    ],
)
def test_hold_beats_release_beats_verdict(
    current: str | None, decided: State, held: bool, released: bool, expected: State
) -> None:
    assert lifecycle.settle(current, decided, held=held, released=released) == expected


def test_unknown_states_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="expected one of pending, passed"):
        lifecycle.parse("approved")
