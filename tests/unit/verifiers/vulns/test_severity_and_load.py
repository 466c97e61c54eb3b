"""Severity from real records, and reading records from files, directories and zip archives."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.support.testdata import GO_VULNDB, OSV
from tests.unit.verifiers.vulns.conftest import record
from verifiers.base import Severity
from verifiers.vulns.load import Rejected, read_path
from verifiers.vulns.osv import Advisory
from verifiers.vulns.severity import score

pytestmark = pytest.mark.testdata


def test_cvss_vector_is_scored() -> None:
    scored = score(record("pypi/PYSEC-2023-192.json").raw)
    assert (scored.severity, scored.score, scored.source) == (Severity.HIGH, 8.1, "cvss")
    assert score(record("pypi/PYSEC-2023-228.json").raw).severity is Severity.LOW


def test_no_vector_no_label_defaults_to_medium() -> None:
    scored = score(record("go/GO-2023-1751.json").raw)
    assert (scored.severity, scored.source) == (Severity.MEDIUM, "default")


def test_database_label_when_no_vector() -> None:
    raw = {"id": "GHSA-x", "database_specific": {"severity": "MODERATE"}}
    assert score(raw).severity is Severity.MEDIUM
    label = {"database_specific": {"severity": "critical"}}
    raw2: dict[str, object] = {"id": "GHSA-y", "affected": [label]}
    assert score(raw2).severity is Severity.CRITICAL


def test_bad_records_are_rejected_not_raised(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text(json.dumps({"no": "id"}))
    (tmp_path / "c.json").write_text(json.dumps({"id": "X-1", "affected": [{"ranges": []}]}))
    # Deeper than Python's parser recurses: it raised RecursionError and stopped the import.
    (tmp_path / "d.json").write_text(
        '{"id": "X-2", "details": ' + "[" * 50_000 + "]" * 50_000 + "}"
    )
    out = list(read_path(tmp_path))
    assert len(out) == 4 and all(isinstance(r, Rejected) for r in out)
    deep = [r for r in out if isinstance(r, Rejected) and "d.json" in r.where]
    assert len(deep) == 1 and "nested deeper than 64 levels" in deep[0].reason


def test_zip_archive_like_osv_publishes(tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("GO-2023-1751", "GO-2023-1878"):
            z.writestr(f"{name}.json", (OSV / "go" / f"{name}.json").read_bytes())
    ids = [r.id for r in read_path(archive) if isinstance(r, Advisory)]
    assert ids == ["GO-2023-1751", "GO-2023-1878"]


def test_whole_go_database_reads_without_rejects() -> None:
    out = list(read_path(GO_VULNDB))
    assert len([r for r in out if isinstance(r, Advisory)]) == 4291
    assert not [r for r in out if isinstance(r, Rejected)]
