"""Catalog pages over what the caller may see (``proxy.handlers.catalog.visible_page``): the
registry's pages are read until a page of visible names and one more is found, whatever the
hidden names in between."""

from __future__ import annotations

import pytest

from proxy.handlers.catalog import Page, visible_page

CATALOG = sorted(
    [f"hidden/{n:03d}" for n in range(50)] + ["team/a", "team/b", "team/c", "zzz/hidden"]
)


class Registry:
    """Distribution's catalog in pages of ``size`` after ``last``, counting the reads."""

    def __init__(self, names: list[str], size: int) -> None:
        self.names = names
        self.size = size
        self.reads = 0

    async def page(self, last: str | None) -> tuple[list[str], bool]:
        self.reads += 1
        after = [n for n in self.names if last is None or n > last]
        return after[: self.size], len(after) > self.size


def team(name: str) -> bool:
    return name.startswith("team/")


@pytest.mark.parametrize("upstream_size", [1, 2, 7, 1000])
async def test_pages_of_visible_names(upstream_size: int) -> None:
    registry = Registry(CATALOG, upstream_size)
    assert await visible_page(registry.page, team, None, 1) == Page(["team/a"], True)
    assert await visible_page(registry.page, team, "team/a", 1) == Page(["team/b"], True)
    assert await visible_page(registry.page, team, "team/b", 1) == Page(["team/c"], False)
    assert await visible_page(registry.page, team, None, 3) == Page(
        ["team/a", "team/b", "team/c"], False
    )
    assert await visible_page(registry.page, team, None, 2) == Page(["team/a", "team/b"], True)


async def test_nothing_visible_is_an_empty_last_page() -> None:
    registry = Registry(CATALOG, 3)
    assert await visible_page(registry.page, lambda _: False, None, 1) == Page([], False)
    assert registry.reads == -(-len(CATALOG) // 3)  # read to the end, then stopped


async def test_size_zero_reads_nothing() -> None:
    registry = Registry(CATALOG, 3)
    assert await visible_page(registry.page, team, None, 0) == Page([], False)
    assert registry.reads == 0
