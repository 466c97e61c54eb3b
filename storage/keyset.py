"""Keyset pages for the console's lists: read past a position, never ``OFFSET``.

A page is read with a limit one larger than it shows, so whether there is a next page is known
without counting. Where a reader may see only some repositories, the database narrows with a
``LIKE`` (``storage.globs.prefilter``) and Python keeps the exact matches; a page the exact
rule thinned out is read on from its last row until it is full or the table ends.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from storage import globs

R = TypeVar("R")


@dataclass(frozen=True)
class Page(Generic[R]):
    """Rows of one page and whether more follow the last of them."""

    rows: list[R]
    more: bool


async def read_page(
    fetch: Callable[[R | None, int], Awaitable[Sequence[R]]],
    repository_of: Callable[[R], str | None],
    patterns: Sequence[str] | None,
    limit: int,
) -> Page[R]:
    """Up to ``limit`` rows whose repository ``patterns`` match (None: every row), by calling
    ``fetch(after, n)`` for the ``n`` rows following ``after`` (None: from the start)."""
    exact = None if patterns is None or globs.everything(patterns) else patterns
    kept: list[R] = []
    after: R | None = None
    want = limit + 1
    while True:
        rows = await fetch(after, want)
        kept += [r for r in rows if exact is None or globs.matches(repository_of(r), exact)]
        if len(kept) > limit or len(rows) < want:
            return Page(kept[:limit], len(kept) > limit)
        after = rows[-1]
