"""One duration grammar (config/durations.py) for settings and every CLI option."""

from __future__ import annotations

import argparse
from datetime import timedelta

import pytest

from cli.admin import parse_duration as admin_duration
from cli.users import UsageError
from cli.users import parse_duration as users_duration
from config.durations import DurationError, parse_duration, positive_duration
from config.scheduling import seconds

WRITTEN = [("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1h30m", 5400)]
WRITTEN += [("1.5h", 5400), (" 12H ", 43200), ("0s", 0)]
NOT_DURATIONS = ["", "10", "1x", "h", "1h 30m", "-1h", "1h30", "h1", "1e3s", "1..5h", "1_0s"]


@pytest.mark.parametrize(("text", "expected"), WRITTEN)
def test_written_durations(text: str, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", NOT_DURATIONS)
def test_not_durations_name_the_text_and_show_examples(text: str) -> None:
    with pytest.raises(DurationError, match=r"not a duration: .*use e\.g\. 90s"):
        parse_duration(text)


def test_positive_durations_refuse_zero() -> None:
    assert positive_duration("1s") == 1
    with pytest.raises(DurationError, match="longer than zero"):
        positive_duration("0h")


@pytest.mark.parametrize(("text", "expected"), [w for w in WRITTEN if w[1] > 0])
def test_every_reader_accepts_the_same_text(text: str, expected: float) -> None:
    assert seconds(text) == expected
    assert admin_duration(text) == expected
    assert users_duration(text) == timedelta(seconds=expected)


def test_settings_also_take_seconds_and_off() -> None:
    assert (seconds("90"), seconds(90), seconds("off"), seconds("Never")) == (90.0, 90, 0.0, 0.0)
    with pytest.raises(ValueError, match="number of seconds, or off"):
        seconds("soon")


def test_each_cli_reports_in_its_own_terms() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        admin_duration("soon")
    with pytest.raises(UsageError, match="--expires-in: not a duration: 'soon'"):
        users_duration("soon")
