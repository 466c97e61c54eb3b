"""OSV sources for the advisory tests: real records (``tests/data/osv``), records that are
wrong in one field each, and archives built to cost memory (a zip bomb, a huge record).

Shared by the unit tests (small sizes) and the end-to-end tests (the sizes from issue 22).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from tests.support.testdata import OSV

MiB = 1024 * 1024

BAD_RECORDS: dict[str, dict[str, Any]] = {
    "BAD-ALIASES": {"id": "BAD-ALIASES", "aliases": 5},
    "BAD-SUMMARY": {"id": "BAD-SUMMARY", "summary": {"text": "not a string"}},
    "BAD-DETAILS": {"id": "BAD-DETAILS", "details": ["not", "a", "string"]},
    "BAD-SEVERITY": {"id": "BAD-SEVERITY", "severity": 7.5},
    "BAD-PACKAGE": {"id": "BAD-PACKAGE", "affected": [{"package": {"ecosystem": "PyPI"}}]},
    "BAD-EVENTS": {
        "id": "BAD-EVENTS",
        "affected": [
            {"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": [{"type": "ECOSYSTEM"}]},
            {"package": {"ecosystem": "PyPI", "name": "y"}, "ranges": [{"events": 3}]},
        ],
    },
    # Parses, but PostgreSQL's text columns cannot hold it: it used to fail the transaction.
    "BAD-NUL": {"id": "BAD-NUL", "affected": [{"package": {"ecosystem": "npm", "name": "a\0"}}]},
}
"""One record per way of being wrong that used to raise TypeError or AttributeError (and so
abort the whole import, or its transaction); each one's message names the field below."""

BAD_FIELDS = {
    "BAD-ALIASES": "aliases",
    "BAD-SUMMARY": "summary",
    "BAD-DETAILS": "details",
    "BAD-SEVERITY": "severity",
    "BAD-PACKAGE": "affected.0.package.name",
    "BAD-EVENTS": "affected.1.ranges.0.type",
    "BAD-NUL": "affected.0.package.name",
}


def real(relative: str) -> bytes:
    return (OSV / relative).read_bytes()


def write_bad_records(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, record in BAD_RECORDS.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    return paths


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return path


def add_bomb(path: Path, name: str, size: int) -> Path:
    """Append a member of ``size`` uncompressed bytes (a JSON string of zeros) that deflates
    to about a thousandth of that: issue 22's 700 MB member took 685 KB."""
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open(name, "w", force_zip64=True) as out,
    ):
        head = json.dumps({"id": name.removesuffix(".json"), "summary": ""})[:-2].encode()
        out.write(head)
        block = b"\0" * MiB
        for _ in range(size // MiB):
            out.write(block)
        out.write(b'"}')
    return path


def huge_record(record_id: str, entries: int) -> bytes:
    """A record with ``entries`` ``affected`` entries, each a distinct PyPI package: issue 22's
    25 MB file with 200,000 of them took 968 MB and 68 s to import."""
    affected = [
        {
            "package": {"ecosystem": "PyPI", "name": f"hostile-package-{n}"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}],
        }
        for n in range(entries)
    ]
    record = {"id": record_id, "modified": "2024-01-01T00:00:00Z", "affected": affected}
    return json.dumps(record, separators=(",", ":")).encode()
