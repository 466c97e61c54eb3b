"""The advisory store on SQLite: idempotent import, newer-modified replaces, package index."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage.advisories import DbAdvisoryStore
from storage.inventory import DbInventoryStore
from tests.support.testdata import GO_VULNDB
from tests.unit.verifiers.vulns.conftest import record
from verifiers.scan.model import ImageInventory, OsRelease, Package
from verifiers.vulns.load import read_path
from verifiers.vulns.osv import Advisory

pytestmark = pytest.mark.testdata


async def test_reimport_does_not_duplicate_and_newer_replaces(db: Any) -> None:
    store = DbAdvisoryStore(db)
    urllib3 = record("pypi/PYSEC-2023-192.json")
    first = await store.import_advisories([urllib3], "t")
    again = await store.import_advisories([urllib3], "t")
    assert (first.added, again.added, again.unchanged) == (1, 0, 1)
    # Issue 16: an import that changes nothing makes no data version; the one in force stays.
    assert (first.new_version, again.new_version) == (True, False)
    assert again.data_version == first.data_version == await store.data_version()
    assert again.packages == frozenset()
    assert len(await store.for_package("PyPI", "urllib3")) == 1

    newer = Advisory.from_json({**urllib3.raw, "modified": "2030-01-01T00:00:00Z", "affected": []})
    result = await store.import_advisories([newer], "t")
    assert (result.added, result.updated) == (0, 1)
    assert result.new_version and result.data_version == first.data_version + 1
    assert await store.for_package("PyPI", "urllib3") == []
    assert await store.data_version() == result.data_version


async def test_pypi_names_are_normalized(db: Any) -> None:
    store = DbAdvisoryStore(db)
    await store.import_advisories([record("pypi/PYSEC-2023-221.json")], "t")  # werkzeug
    assert [a.id for a in await store.for_package("PyPI", "Werkzeug")] == ["PYSEC-2023-221"]


async def test_images_found_by_package_without_reading_layers(db: Any) -> None:
    inventory = DbInventoryStore(db)
    pkg = Package(ecosystem="pypi", name="urllib3", version="1.26.12", path="x/METADATA")
    deb = Package(
        ecosystem="deb", name="libssl3", version="3.0.11-1", path="s", source_name="openssl"
    )
    await inventory.store("app", "sha256:a", ImageInventory(OsRelease("debian", "12"), (pkg,)))
    await inventory.store("os", "sha256:b", ImageInventory(OsRelease("debian", "12"), (deb,)))
    store = DbAdvisoryStore(db)
    assert await store.images_with({("PyPI", "urllib3")}) == {("app", "sha256:a")}
    assert await store.images_with({("Debian:12", "openssl")}) == {("os", "sha256:b")}
    assert await store.images_with({("Debian:12", "libssl3")}) == set()  # keyed by source
    assert await store.images_with({("npm", "urllib3")}) == set()


@pytest.mark.slow
async def test_bulk_import_of_the_go_database(db: Any) -> None:
    records = [r for r in read_path(GO_VULNDB) if isinstance(r, Advisory)]
    store = DbAdvisoryStore(db)
    started = time.monotonic()
    result = await store.import_advisories(records, "go-vulndb-all")
    first = time.monotonic() - started
    assert result.added == 4291
    again = await store.import_advisories(records, "go-vulndb-all")
    assert (again.added, again.updated, again.unchanged) == (0, 0, 4291)
    assert first < 60
    assert len(await store.for_package("Go", "stdlib")) > 100


def _record(ident: str, modified: str, package: str) -> Advisory:
    affected = [{"package": {"ecosystem": "PyPI", "name": package}}]
    return Advisory.from_json({"id": ident, "modified": modified, "affected": affected})


async def _batches(*batches: list[Advisory]) -> AsyncIterator[list[Advisory]]:
    for batch in batches:
        yield batch


async def test_records_streamed_in_batches_count_once_and_the_newest_wins(db: Any) -> None:
    store = DbAdvisoryStore(db)
    await store.import_advisories([_record("S-1", "2024-01-01T00:00:00Z", "old")], "t")
    first = _record("A-1", "2024-01-01T00:00:00Z", "a-first")
    newer = _record("A-1", "2024-06-01T00:00:00Z", "a-second")
    stale = _record("S-1", "2024-01-01T00:00:00Z", "old")
    updated = _record("S-1", "2025-01-01T00:00:00Z", "new")
    result = await store.import_batches(
        _batches([first, stale], [newer, _record("B-1", "2024-01-01T00:00:00Z", "b")], [updated]),
        "t",
    )
    # A-1 is new however often it comes; S-1 was stored, seen unchanged, then newer.
    assert (result.added, result.updated, result.unchanged) == (2, 1, 0)
    assert result.advisories == {"A-1", "B-1", "S-1"}
    assert [a.affected[0].name for a in await store.for_package("PyPI", "a-second")] == ["a-second"]
    assert await store.for_package("PyPI", "a-first") == []  # the replaced copy's index rows
    assert await store.for_package("PyPI", "old") == []
    assert [a.id for a in await store.for_package("PyPI", "new")] == ["S-1"]


async def test_an_import_that_fails_half_way_leaves_the_data_as_it_was(db: Any) -> None:
    store = DbAdvisoryStore(db)
    before = await store.data_version()

    async def failing() -> AsyncIterator[list[Advisory]]:
        yield [_record("F-1", "2024-01-01T00:00:00Z", "f")]
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError):
        await store.import_batches(failing(), "t")
    assert await store.data_version() == before
    assert await store.for_package("PyPI", "f") == []


async def test_a_nul_character_outside_the_stored_columns_is_kept(db: Any) -> None:
    """PostgreSQL's text columns refuse NUL (the reader refuses such records); the raw JSON
    column keeps it escaped, so a NUL elsewhere in a record imports on both backends."""
    body = b'{"id": "N-1", "summary": "s", "database_specific": {"note": "a\\u0000b"}}'
    store = DbAdvisoryStore(db)
    result = await store.import_advisories([Advisory.from_bytes(body)], "t")
    assert result.added == 1
