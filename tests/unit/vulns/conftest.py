"""The real OSV records of ../shared/testdata/osv (CC-BY-4.0, see its NOTICE.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifiers.vulns.osv import Advisory

OSV = Path(__file__).resolve().parents[4] / "shared" / "testdata" / "osv"


def record(relative: str) -> Advisory:
    path = OSV / relative
    if not path.exists():
        pytest.skip(f"test data {path} not present")
    return Advisory.from_bytes(path.read_bytes())
