"""``config/text.py``: what reaches a terminal from stored text, and what admins may write."""

from __future__ import annotations

import io
import logging
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from config.text import PlainText, VisibleFormatter, check_plain, visible


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("/v2/app/manifests/v1", "/v2/app/manifests/v1"),
        ("v1\x1b[2J\x1b[H", "v1\\x1b[2J\\x1b[H"),  # clear screen, cursor home
        ("a\x9b2Jb", "a\\x9b2Jb"),  # the one-byte C1 CSI
        ("line\nforged\r\n", "line\\x0aforged\\x0d\\x0a"),
        ("all checks \u202edeliaf", "all checks \\u202edeliaf"),  # right-to-left override
        ("\u2066isolate\u2069 \u200b\ufeff", "\\u2066isolate\\u2069 \\u200b\\ufeff"),
        ("tab\tbell\x07del\x7f", "tab\\x09bell\\x07del\\x7f"),
        ("\U000e0041 tag", "\\U000e0041 tag"),
        ("C:\\x1b is typed", "C:\\\\x1b is typed"),  # a typed escape cannot pass for one
        ("naïve Grüße 漢字 😀 a\u00a0b", "naïve Grüße 漢字 😀 a\u00a0b"),
        (None, ""),
    ],
)
def test_visible_escapes_what_acts_on_a_terminal(raw: str | None, shown: str) -> None:
    assert visible(raw) == shown


@given(st.text())
def test_visible_output_never_holds_a_control_or_format_character(text: str) -> None:
    shown = visible(text)
    assert all(c.isprintable() or unicodedata.category(c) == "Zs" for c in shown)
    assert "\n" not in shown and "\r" not in shown
    if text.isprintable() and "\\" not in text:
        assert shown == text


@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_visible_is_unambiguous(text: str) -> None:
    """Two different texts never look the same once shown."""
    decoded = visible(text).encode("ascii", "backslashreplace").decode("unicode_escape")
    assert decoded == text


@pytest.mark.parametrize(
    "text", ["ok\x1b", "a\nb", "tab\t", "\u202eabc", "x\u2066", "\x85next", "a\u2028b", "\x00"]
)
def test_check_plain_refuses_control_and_bidi_characters(text: str) -> None:
    with pytest.raises(ValueError, match=r"control or bidirectional-control .* U\+"):
        check_plain(text)


def test_check_plain_takes_ordinary_text_of_any_script() -> None:
    for text in ("false positive, see JIRA-12", "Grüße 漢字 😀", "فارسی\u200cمتن"):
        assert check_plain(text) == text


def test_plain_text_fields_name_the_field() -> None:
    class Body(BaseModel):
        reason: PlainText

    with pytest.raises(ValidationError) as caught:
        Body(reason="all checks \u202edeliaf")
    (error,) = caught.value.errors()
    assert error["loc"] == ("reason",) and "U+202E" in error["msg"]


def test_log_records_stay_one_line_and_keep_json_parseable() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(VisibleFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("tests.text")
    log.addHandler(handler)
    try:
        log.warning("client body of %s stalled", "/v2/x\x1b[2J\nFAKE line")
        log.warning('{"path":"/v2/x\\u001b"}')
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "WARNING client body of /v2/x\\x1b[2J\\x0aFAKE line stalled",
        'WARNING {"path":"/v2/x\\u001b"}',
    ]
