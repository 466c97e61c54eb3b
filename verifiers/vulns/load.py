"""Read OSV records from a JSON file, a directory of them, or OSV's per-ecosystem zip archive.

Yields values, never raises on one bad record: a malformed record is logged and skipped
(reported as a :class:`Rejected`) so one bad file does not abort a bulk import.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from verifiers.vulns.osv import Advisory, OsvError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rejected:
    """A record that could not be read; ``where`` names the file (and zip member)."""

    where: str
    reason: str


def read_path(path: Path) -> Iterator[Advisory | Rejected]:
    """Every record under ``path``; directories are walked in sorted order for stable output."""
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file() and child.suffix in (".json", ".zip"):
                yield from read_path(child)
    elif path.suffix == ".zip":
        yield from _read_zip(path)
    else:
        yield _parse(str(path), path.read_bytes())


def _read_zip(path: Path) -> Iterator[Advisory | Rejected]:
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if not member.is_dir() and member.filename.endswith(".json"):
                yield _parse(f"{path}:{member.filename}", archive.read(member))


def _parse(where: str, body: bytes) -> Advisory | Rejected:
    try:
        return Advisory.from_bytes(body)
    except OsvError as exc:
        log.warning("skipping OSV record %s: %s", where, exc)
        return Rejected(where, str(exc))
