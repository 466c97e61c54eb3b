"""Where the data files the tests read live: ``tests/data``, inside the repository.

A clone of the repository is all the tests need: nothing is read from beside the checkout (the
sources and licences of these files are in ``tests/data/NOTICE.md``). A test that reads one of
them is marked ``testdata``; ``tests/test_self_contained.py`` runs those tests in a fresh clone
with nothing beside it, so a file that was never committed fails there instead of skipping.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
OSV = DATA / "osv"
"""Real OSV records: ``pypi/`` (PyPA), ``go/`` (Go standard library) and the Go database."""
OSV_PYPI = OSV / "pypi"
OSV_GO = OSV / "go"
GO_VULNDB = OSV / "go-vulndb-all.zip"
"""Every record of the Go vulnerability database (4,291), as OSV publishes an ecosystem: one
zip archive, which the advisory reader takes as it is."""
SIGSTORE_BUNDLES = DATA / "sigstore-bundle-verify"
"""The Sigstore conformance suite's bundle-verification cases."""


def zip_members(archive: Path) -> list[str]:
    """The ``.json`` members of an OSV zip archive (what an import of it reads)."""
    with zipfile.ZipFile(archive) as opened:
        return [name for name in opened.namelist() if name.endswith(".json")]
