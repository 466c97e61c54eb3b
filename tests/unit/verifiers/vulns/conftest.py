"""The real OSV records of ``tests/data/osv`` (CC-BY-4.0, see ``tests/data/NOTICE.md``)."""

from __future__ import annotations

from tests.support.testdata import OSV
from verifiers.vulns.osv import Advisory


def record(relative: str) -> Advisory:
    """One real record; a missing file fails the test (the data is part of the repository)."""
    return Advisory.from_bytes((OSV / relative).read_bytes())
