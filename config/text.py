"""Text that came from a request or from an admin, on its way to a person's terminal.

Request paths, reasons, actors, identity names, signature details and advisory file names are
stored as they arrived. Printed raw, an escape sequence in a request path clears the admin's
terminal, an encoded newline (``%0a``) forges a table line, and U+202E (right-to-left override)
turns a reason around so that it reads "all checks passed". Two rules, in one place:

* :func:`visible` is how every table and line the CLI prints from stored or received data shows
  text: control, format (bidirectional overrides, zero-width), line- and paragraph-separator,
  surrogate, private-use and unassigned characters become escapes such as ``\\x1b`` and
  ``\\u202e``, and a backslash becomes ``\\\\`` so that nobody can type a fake escape;
* :func:`check_plain` (and :data:`PlainText` for settings and request bodies) refuses control
  characters and bidirectional controls in what admins write: reasons and actors.

The server's own log lines quote requests too (a stalled body's path, a layer's file name), and
go to the operator's terminal under ``scripts/run``: :class:`VisibleFormatter` shows them the
same way, one log record per line.

JSON output (``--json``) needs neither: ``json.dumps`` escapes all of these already.
"""

from __future__ import annotations

import logging
import unicodedata
from typing import Annotated

from pydantic import AfterValidator

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Unicode's Bidi_Control characters: they reorder what a terminal shows."""
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})


def _escape(char: str, backslash: bool) -> str:
    if char == "\\":
        return "\\\\" if backslash else char
    if char.isprintable() or unicodedata.category(char) == "Zs":
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: object, *, backslash: bool = True) -> str:
    """``text`` as it may be shown on a terminal: nothing in it acts on the terminal or
    reorders the line, and every such character is still there to see, escaped.

    ``backslash=False`` leaves backslashes alone, for log lines whose JSON (the access log)
    must stay parseable; there an escape could be faked, but never act."""
    value = "" if text is None else str(text)
    if value.isprintable() and (not backslash or "\\" not in value):
        return value
    return "".join(_escape(char, backslash) for char in value)


def first_refused(text: str) -> str | None:
    """The first control or bidirectional-control character of ``text``, if any."""
    for char in text:
        if char in BIDI_CONTROLS or unicodedata.category(char) in _REFUSED_CATEGORIES:
            return char
    return None


def check_plain(text: str) -> str:
    """``text`` if it holds no control or bidirectional-control character; else ValueError
    naming the first one (for reasons and actors, which people read in logs and tables)."""
    refused = first_refused(text)
    if refused is not None:
        raise ValueError(
            f"must not contain control or bidirectional-control characters (found "
            f"U+{ord(refused):04X} at position {text.index(refused)}): write it on one line, "
            "without escape sequences"
        )
    return text


PlainText = Annotated[str, AfterValidator(check_plain)]
"""A string that :func:`check_plain` accepts, for pydantic models."""


class VisibleFormatter(logging.Formatter):
    """A log formatter that passes each message, and each line of a traceback, through
    :func:`visible`: a record is one line, and nothing in it reaches the terminal raw."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = visible(record.message, backslash=False)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        lines = super().formatException(ei).splitlines()
        return "\n".join(visible(line, backslash=False) for line in lines)
