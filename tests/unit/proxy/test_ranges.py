"""The blob ``Range`` rule (``proxy/ranges.py``): what both blob paths answer 416."""

from __future__ import annotations

import base64
import json

import pytest

from proxy import ranges
from proxy.upload_offset import next_bytes


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 2048, True),
        ("bytes=100-199", 2048, True),
        ("bytes=2047-", 2048, True),
        ("bytes=2000-9999", 2048, True),  # a last byte past the end is cut, not refused
        ("bytes=-1", 2048, True),
        ("bytes=-5000", 2048, True),
        ("bytes=5000-6000, 0-1", 2048, True),  # one satisfiable range is enough
        ("BYTES=0-1", 2048, True),
        ("bytes=2048-", 2048, False),
        ("bytes=5000-10000", 2048, False),
        ("bytes=-0", 2048, False),
        ("bytes=0-0", 0, False),
        ("bytes=-1", 0, False),
        ("bytes=500-0", 2048, False),  # first after last: malformed
        ("bytes=abc", 2048, False),
        ("bytes=-", 2048, False),
        ("bytes=", 2048, False),
        ("items=0-1", 2048, False),
        ("0-1", 2048, False),
        ("bytes=0-1, x", 2048, False),
        ("bytes=1" + "0" * 30 + "-", 2048, False),
    ],
)
def test_satisfiable(header: str, size: int, expected: bool) -> None:
    assert ranges.satisfiable(header, size) is expected


def _location(offset: object) -> str:
    state = json.dumps({"Name": "a/b", "UUID": "u", "Offset": offset, "StartedAt": "x"})
    packed = base64.urlsafe_b64encode(b"\x00" * 32 + state.encode()).decode()
    return f"http://registry/v2/a/b/blobs/uploads/u?_state={packed}"


@pytest.mark.parametrize(
    ("location", "range_header", "expected"),
    [
        (_location(0), "0-0", (0,)),  # empty
        (_location(1), "0-0", (1,)),  # one byte
        (_location(10), "0-9", (10,)),
        (None, "0-0", (0, 1)),  # no state: both readings of 0-0
        (None, "0-9", (10,)),
        (_location(5), "0-9", (10,)),  # the two disagree: the Range decides
        (_location("1"), "0-0", (0, 1)),
        ("http://registry/v2/a/b/blobs/uploads/u?_state=%%%", "0-0", (0, 1)),
        (_location(3), None, (3,)),
        (None, None, None),
        (None, "bytes 0-9/10", None),
    ],
)
def test_next_bytes(
    location: str | None, range_header: str | None, expected: tuple[int, ...] | None
) -> None:
    assert next_bytes(location, range_header) == expected
