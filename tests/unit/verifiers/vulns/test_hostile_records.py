"""Hostile OSV input at the reader (issue 22, items 6 and 7): a field of the wrong type, a value
no database stores, a record over the size cap or a zip member that lies about its size is a
``Rejected`` naming the record and the field; only a source that cannot be read as a whole
(not a zip, over the total cap) raises."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest

from tests.support.osvdata import (
    BAD_FIELDS,
    BAD_RECORDS,
    MiB,
    add_bomb,
    real,
    write_bad_records,
    write_zip,
)
from verifiers.vulns.load import Loaded, LoadError, ReadLimits, Rejected, read_path, read_records
from verifiers.vulns.osv import Advisory, OsvError

pytestmark = pytest.mark.testdata
SMALL = ReadLimits(max_record_bytes=64 * 1024, max_uncompressed_bytes=8 * MiB)


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_a_bad_field_is_an_error_naming_record_and_field(name: str) -> None:
    with pytest.raises(OsvError) as caught:
        Advisory.from_bytes(json.dumps(BAD_RECORDS[name]).encode())
    assert str(caught.value).startswith(f"{name}: {BAD_FIELDS[name]}: ")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"id": "X-1", "summary": NaN}', "NaN is not a JSON value"),
        (b'{"id": "X-1", "summary": -Infinity}', "-Infinity is not a JSON value"),
        (b'{"id": "X-1", "summary": "\\ud800"}', "X-1: a string holds a lone surrogate"),
        (b'{"id": "X-1", "summary": "a\\u0000"}', "X-1: summary: a NUL character cannot be"),
        (b'{"id": "X-1", "details": "\\u0000"}', "X-1: details: a NUL character cannot be"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
        (json.dumps({"id": "X" * 129}).encode(), "id: String should have at most 128"),
        (b'{"id": "X-1", "modified": 20240101}', "X-1: modified: Input should be a valid string"),
        (b'{"id": "X-1", "aliases": [1]}', "X-1: aliases.0: Input should be a valid string"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_what_no_database_stores_is_an_error(body: bytes, reason: str) -> None:
    with pytest.raises(OsvError) as caught:
        Advisory.from_bytes(body)
    assert reason in str(caught.value)


def test_long_package_names_and_control_characters_in_ids() -> None:
    long_name = {"package": {"ecosystem": "npm", "name": "n" * 256}}
    with pytest.raises(OsvError, match=r"affected\.0\.package\.name: String should have at most"):
        Advisory.from_json({"id": "X-1", "affected": [long_name]})
    with pytest.raises(OsvError) as caught:
        Advisory.from_json({"id": "X\x1b[2J\u202e-1", "aliases": 5})
    assert str(caught.value).startswith("X\\u001b[2J\\u202e-1: aliases: ")


def test_null_where_a_field_may_be_absent_is_accepted() -> None:
    data = {"id": "X-1", "aliases": None, "summary": None, "details": None, "affected": None}
    advisory = Advisory.from_json(data)
    assert (advisory.aliases, advisory.summary, advisory.affected) == ((), "", ())
    entry = {"package": {"ecosystem": "PyPI", "name": "a"}, "ranges": None, "versions": None}
    assert Advisory.from_json({"id": "X-2", "affected": [entry]}).affected[0].ranges == ()


def test_bad_records_are_skipped_and_the_rest_read(tmp_path: Path) -> None:
    for name in ("PYSEC-2023-117", "PYSEC-2023-135"):
        (tmp_path / f"{name}.json").write_bytes(real(f"pypi/{name}.json"))
    write_bad_records(tmp_path / "bad")
    out = list(read_path(tmp_path))
    assert [r.id for r in out if isinstance(r, Advisory)] == ["PYSEC-2023-117", "PYSEC-2023-135"]
    rejected = {Path(r.where).stem: r.reason for r in out if isinstance(r, Rejected)}
    assert {n: r.split(": ")[1] for n, r in rejected.items()} == BAD_FIELDS


def test_a_member_over_the_cap_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "all.zip", {"GO-2023-1751.json": real("go/GO-2023-1751.json")})
    add_bomb(archive, "BOMB-1.json", 8 * MiB)
    zipfile.ZipFile(archive, "a").writestr("GO-2023-1878.json", real("go/GO-2023-1878.json"))
    out = list(read_records(archive, SMALL))
    assert [r.advisory.id for r in out if isinstance(r, Loaded)] == ["GO-2023-1751", "GO-2023-1878"]
    (bomb,) = (r for r in out if isinstance(r, Rejected))
    assert bomb.where == f"{archive}:BOMB-1.json"
    assert bomb.reason == f"{8 * MiB + 31} bytes, over max_record_bytes (65536)"


def test_a_member_lying_about_its_size_is_skipped(tmp_path: Path) -> None:
    """The declared size says 100 bytes; the data inflates to 1 MiB. zipfile stops at the
    declared size (and then fails the CRC); whatever it does, the read stops at the cap."""
    archive = tmp_path / "all.zip"
    add_bomb(write_zip(archive, {}), "LIAR-1.json", MiB)
    data = bytearray(archive.read_bytes())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 100)  # uncompressed size in the local header
    struct.pack_into("<I", data, central + 24, 100)  # ... and in the central directory
    archive.write_bytes(bytes(data))
    (liar,) = read_records(archive, SMALL)
    assert isinstance(liar, Rejected) and liar.where.endswith(":LIAR-1.json")
    assert "unreadable zip member" in liar.reason or "max_record_bytes" in liar.reason


def test_a_json_file_over_the_cap_is_skipped_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "BIG-1.json"
    big.write_bytes(b" " * (SMALL.max_record_bytes + 1))
    (rejected,) = read_records(big, SMALL)
    assert rejected == Rejected(str(big), "65537 bytes, over max_record_bytes (65536)")


def test_more_than_the_total_cap_fails_the_whole_read(tmp_path: Path) -> None:
    for n in range(5):
        (tmp_path / f"R-{n}.json").write_text(json.dumps({"id": f"R-{n}", "details": "x" * 900}))
    limits = ReadLimits(max_record_bytes=4096, max_uncompressed_bytes=2500)
    records = read_records(tmp_path, limits)
    assert isinstance(next(records), Loaded) and isinstance(next(records), Loaded)
    with pytest.raises(LoadError, match=r"more than max_uncompressed_bytes \(2500\)"):
        next(records)


def test_a_source_that_is_not_a_zip_fails_the_whole_read(tmp_path: Path) -> None:
    bad = tmp_path / "all.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(LoadError, match="is not a zip archive"):
        list(read_records(bad, SMALL))


def test_directories_are_walked_in_order_skipping_other_files(tmp_path: Path) -> None:
    for relative in ("b/GO-2023-1878.json", "a/GO-2023-1751.json", "a/z/GO-2023-1987.json"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(real(f"go/{Path(relative).name}"))
    (tmp_path / "a" / "README.md").write_text("not a record")
    ids = [r.id for r in read_path(tmp_path) if isinstance(r, Advisory)]
    assert ids == ["GO-2023-1751", "GO-2023-1987", "GO-2023-1878"]
