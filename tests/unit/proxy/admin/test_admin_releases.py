"""How long a release may last (``proxy/admin/releases.py``): offsets become UTC, and one cap
holds whether the end is given in seconds or as a moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from proxy.admin.releases import MAX_RELEASE, MAX_RELEASE_SECONDS, ReleaseTermError, release_end

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
HAWAII = timezone(timedelta(hours=-10))


def test_a_moment_with_an_offset_is_the_same_instant_in_utc() -> None:
    """In ten minutes, written in Hawaii's offset, is ten minutes from now, not ten hours ago."""
    local = (NOW + timedelta(minutes=10)).astimezone(HAWAII)
    assert local.hour == 2  # the wall-clock reading a naive store would take for UTC
    end = release_end(NOW, at=local)
    assert end == NOW + timedelta(minutes=10)
    assert end is not None and end.utcoffset() == timedelta(0)


def test_seconds_count_from_now_in_utc() -> None:
    assert release_end(NOW.astimezone(HAWAII), seconds=90) == NOW + timedelta(seconds=90)
    assert release_end(NOW) is None


@pytest.mark.parametrize(
    ("seconds", "at", "field", "words"),
    [
        (MAX_RELEASE_SECONDS + 1, None, "expires_in_seconds", "at most 366 days"),
        (None, NOW + MAX_RELEASE + timedelta(seconds=1), "expires_at", "at most 366 days"),
        (None, datetime(9999, 12, 31, tzinfo=UTC), "expires_at", "at most 366 days"),
        (None, datetime(9999, 12, 31, 23, tzinfo=HAWAII), "expires_at", "out of range"),
        (None, NOW - timedelta(seconds=1), "expires_at", "in the past"),
        (None, datetime(2030, 6, 2), "expires_at", "zone offset"),
        (0, None, "expires_in_seconds", "longer than zero"),
        (float("nan"), None, "expires_in_seconds", "longer than zero"),
        (float("inf"), None, "expires_in_seconds", "at most 366 days"),
        (60, NOW + timedelta(hours=1), None, "not both"),
    ],
)
def test_refused_ends_name_the_field_and_the_reason(
    seconds: float | None, at: datetime | None, field: str | None, words: str
) -> None:
    with pytest.raises(ReleaseTermError) as caught:
        release_end(NOW, seconds=seconds, at=at)
    assert caught.value.field == field
    assert words in caught.value.describe()


def test_the_cap_is_the_same_in_both_forms() -> None:
    assert release_end(NOW, seconds=MAX_RELEASE_SECONDS) == NOW + MAX_RELEASE
    assert release_end(NOW, at=(NOW + MAX_RELEASE).astimezone(HAWAII)) == NOW + MAX_RELEASE
