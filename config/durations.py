"""Durations as people write them: ``90s``, ``30m``, ``1h30m``, ``2d``, ``1.5h``.

One grammar for every place that reads a duration (settings, ``gatekeeper quarantine release
--expires-in``, ``gatekeeper users create --expires-in``, ``gatekeeper rescan --spread``), so a
value that works in one place works in all. A unit is required here; settings also accept a
bare number of seconds and ``"off"`` (``config/scheduling.py``), where a number is what TOML and
environment variables naturally carry.
"""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EXAMPLES = "90s, 30m, 1h, 2d or 1h30m"


class DurationError(ValueError):
    """Text that is not a duration; the message shows the text and examples of valid ones."""


def parse_duration(text: str) -> float:
    """Seconds in ``text``: one or more number-unit parts (``s``, ``m``, ``h``, ``d``), written
    together without spaces, case-insensitive. Zero is a valid duration; callers that need a
    positive one say so in their own words."""
    wanted = text.strip().lower()
    parts = _PART.findall(wanted)
    if not parts or "".join(n + u for n, u in parts) != wanted:
        raise DurationError(f"not a duration: {text!r} (use e.g. {EXAMPLES})")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def positive_duration(text: str) -> float:
    """:func:`parse_duration` for a period that must actually last (an expiry, a timeout)."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise DurationError(f"the duration {text!r} must be longer than zero")
    return seconds
