"""``oci/boundedjson.py``: untrusted JSON parses only up to a depth, measured exactly and
in linear time."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci.boundedjson import MAX_DEPTH, JSONTooDeep, depth, loads

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=40,
)


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


@given(VALUES, st.booleans(), st.sampled_from([None, 1]))
def test_depth_is_exact_whatever_the_strings_hold(value: Any, ascii_: bool, indent: Any) -> None:
    text = json.dumps(value, ensure_ascii=ascii_, indent=indent)
    assert depth(text) == reference_depth(value)
    assert loads(text) == value


@pytest.mark.parametrize(
    "text",
    ['["[[[[[[[["]', '{"}}}}": "{{{{\\"[["}', '["\\\\", "[", "\\"["]', '"\\u005b["'],
)
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    assert depth(text) == reference_depth(json.loads(text))


def test_the_limit_is_inclusive_and_raises_a_value_error() -> None:
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(JSONTooDeep, match=f"deeper than {MAX_DEPTH} levels"):
        loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(ValueError):  # what callers catch, without knowing this module
        loads('{"a":' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(JSONTooDeep):
        loads("[" * 10, max_depth=3)


def test_bytes_in_any_json_encoding() -> None:
    doc = {"a": ["ü", {"b": "[["}]}
    for encoding in ("utf-8", "utf-16", "utf-32-le"):
        assert loads(json.dumps(doc, ensure_ascii=False).encode(encoding)) == doc
    with pytest.raises(ValueError):
        loads(b"\xff\xfe{")


def test_an_invalid_document_is_still_refused_as_invalid() -> None:
    for text in ('["unterminated', "[1, 2", "]]]][[[", '["a\\'):
        with pytest.raises(ValueError):
            loads(text)


@pytest.mark.parametrize(
    "text",
    [
        '"\\' * 1_000_000,  # every quote escaped: a rescanning regex is quadratic here
        '"\\' * 1_000_000 + "\\",
        '"' + "a" * 4_000_000,
        "[]" * 2_000_000,
        '["\\\\' * 500_000,
    ],
    ids=["escaped-quotes", "trailing-backslash", "unterminated", "flat-brackets", "mixed"],
)
def test_measuring_is_linear_on_hostile_input(text: str) -> None:
    started = time.perf_counter()
    depth(text)
    assert time.perf_counter() - started < 5.0  # about 0.5 s on a loaded CI core
