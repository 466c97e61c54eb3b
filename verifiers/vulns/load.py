"""Read OSV records from a JSON file, a directory of them, or OSV's per-ecosystem zip archive.

Records are yielded one at a time, so a caller that stores them as they come holds one record
(and whatever batch it keeps), never the archive. Each read is capped by :class:`ReadLimits`:
a record larger than ``max_record_bytes`` uncompressed is skipped without reading past the cap
(a 700 MB member of a 685 KB zip costs 4 MiB, not 1.5 GB), and a source that holds more than
``max_uncompressed_bytes`` in all raises :class:`LoadError`. A malformed or oversized record
is a :class:`Rejected` value naming the file (and zip member), never an exception, so one bad
record does not abort a bulk import.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from verifiers.vulns.errors import VulnsError
from verifiers.vulns.osv import Advisory, OsvError, printable

CHUNK = 64 * 1024
MiB = 1024 * 1024
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)
"""What reading one zip member can raise: a CRC mismatch, corrupt or truncated data, an
unsupported compression method, encryption. The member is rejected, the rest still read."""


class LoadError(VulnsError):
    """The source as a whole cannot be read: not a zip archive, or over a total cap."""


@dataclass(frozen=True)
class ReadLimits:
    """Caps on what reading one source may cost (``[advisories]`` settings)."""

    max_record_bytes: int = 4 * MiB
    """One record (a JSON file or zip member), uncompressed; a larger one is skipped. Parsing
    takes about 15 times a record's size in memory, so this bounds the importer's memory."""
    max_uncompressed_bytes: int = 16 * 1024 * MiB
    """Everything read from one source, uncompressed; past it the whole read fails."""


@dataclass(frozen=True)
class Rejected:
    """A record that could not be read; ``where`` names the file (and zip member)."""

    where: str
    reason: str


@dataclass(frozen=True)
class Loaded:
    """A record that parsed, with where it came from and its size (for batching by bytes)."""

    advisory: Advisory
    where: str
    size: int


class _Budget:
    """The uncompressed bytes one source may still yield."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self.left = limits.max_uncompressed_bytes

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise LoadError(
                "it holds more than max_uncompressed_bytes "
                f"({self.limits.max_uncompressed_bytes}) uncompressed"
            )


def read_path(path: Path, limits: ReadLimits | None = None) -> Iterator[Advisory | Rejected]:
    """Every record under ``path`` (the advisories and the rejects)."""
    for record in read_records(path, limits or ReadLimits()):
        yield record.advisory if isinstance(record, Loaded) else record


def read_records(path: Path, limits: ReadLimits) -> Generator[Loaded | Rejected, None, None]:
    """Every record under ``path``; directories are walked in sorted order for stable output.
    Raises :class:`LoadError` for a source that cannot be read as a whole."""
    budget = _Budget(limits)
    for file in _files(path):
        if file.suffix == ".zip":
            yield from _read_zip(file, budget)
        else:
            yield _read_file(file, budget)


def _files(path: Path) -> Iterator[Path]:
    """``path`` itself, or the ``.json`` and ``.zip`` files under it, one directory at a time
    (a walk holds one directory's listing, not the whole tree's); symlinks are not followed."""
    if not path.is_dir():
        yield path
        return
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in sorted(names):
            child = Path(root, name)
            if child.suffix in (".json", ".zip") and child.is_file():
                yield child


def _read_file(path: Path, budget: _Budget) -> Loaded | Rejected:
    where = printable(str(path))
    with path.open("rb") as stream:
        body = _read_capped(stream, os.fstat(stream.fileno()).st_size, where, budget)
    return body if isinstance(body, Rejected) else _parse(where, body)


def _read_zip(path: Path, budget: _Budget) -> Iterator[Loaded | Rejected]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise LoadError(f"{printable(str(path))} is not a zip archive: {exc}") from None
    with archive:
        for member in archive.infolist():
            if member.is_dir() or not member.filename.endswith(".json"):
                continue
            where = printable(f"{path}:{member.filename}")
            try:
                with archive.open(member) as stream:
                    body = _read_capped(stream, member.file_size, where, budget)
            except _MEMBER_ERRORS as exc:
                yield Rejected(where, f"unreadable zip member: {exc}")
                continue
            yield body if isinstance(body, Rejected) else _parse(where, body)


def _read_capped(stream: IO[bytes], declared: int, where: str, budget: _Budget) -> bytes | Rejected:
    """The whole of ``stream`` if it is within ``max_record_bytes``; the declared size (a
    file's, a zip member's) is checked first, the bytes actually read as well (a zip can lie)."""
    limit = budget.limits.max_record_bytes
    if declared > limit:
        return Rejected(where, f"{declared} bytes, over max_record_bytes ({limit})")
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(min(CHUNK, limit + 1 - size)):
        budget.spend(len(chunk))
        size += len(chunk)
        if size > limit:
            return Rejected(where, f"more than max_record_bytes ({limit}) uncompressed")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(where: str, body: bytes) -> Loaded | Rejected:
    try:
        return Loaded(Advisory.from_bytes(body), where, len(body))
    except OsvError as exc:
        return Rejected(where, str(exc))
