"""Repository globs (``team/*``, the patterns of grants and waivers) as SQL filters.

The database narrows, Python decides: :func:`prefilter` is a ``LIKE`` that every name the globs
match passes (``*`` is ``%``, ``?`` is ``_``, a ``[...]`` class and what follows it become
``%``; SQLite's ``LIKE`` also ignores ASCII case), and :func:`matches` is the exact
``fnmatch`` rule the rest of the gatekeeper uses. Readers fetch with the first and keep rows by
the second, fetching again when the second dropped some, so a listing's limit still counts
matching rows.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from sqlalchemy import false, or_
from sqlalchemy.sql.elements import ColumnElement

ESCAPE = "\\"


def _like(pattern: str) -> str:
    out = []
    for char in pattern:
        if char == "[":
            out.append("%")
            break
        if char in "%_" + ESCAPE:
            out.append(ESCAPE + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


def everything(patterns: Sequence[str]) -> bool:
    """A ``*`` among them: no filter needed."""
    return any(p and set(p) == {"*"} for p in patterns)


def prefilter(column: Any, patterns: Sequence[str]) -> ColumnElement[bool]:
    """A superset of the rows whose ``column`` matches one of ``patterns`` (none: no row)."""
    if not patterns:
        return false()
    return or_(*(column.like(_like(p), escape=ESCAPE) for p in patterns))


def matches(name: str | None, patterns: Sequence[str]) -> bool:
    """The exact rule: ``name`` matches one of ``patterns`` (a missing name matches none)."""
    return name is not None and any(fnmatch.fnmatchcase(name, p) for p in patterns)
