"""RPM packages: the SQLite package database (``var/lib/rpm/rpmdb.sqlite``, and
``usr/lib/sysimage/rpm/rpmdb.sqlite`` where newer Fedora and openSUSE keep it).

The database is opened from bytes in memory (``sqlite3`` ``deserialize``), never written to disk.
Each row of its ``Packages`` table is one RPM header blob, which a layer author controls
completely, so :func:`parse_header` bounds-checks every index entry against the blob before
reading a tag; a bad header skips that package, not the database.

Only the SQLite backend (RPM >= 4.16: Fedora 33+, RHEL/Rocky/Alma 9, openSUSE Tumbleweed) is
read. The BerkeleyDB ``Packages`` file (RHEL/CentOS 7 and 8, Amazon Linux 2) and SUSE's ``ndb``
``Packages.db`` are out of scope; their packages are not listed.

A database left in WAL mode is read as its main file says (a committed WAL is checkpointed into
the main file when RPM closes it cleanly; a ``-wal`` file beside it is not consulted).
"""

from __future__ import annotations

import logging
import sqlite3
import struct
from dataclasses import dataclass

from verifiers.scan.ecosystems import Ecosystem
from verifiers.scan.errors import ScanError
from verifiers.scan.model import Package

log = logging.getLogger("gatekeeper.scan")

PATHS = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")

MAX_ENTRIES = 65_536
"""Index entries in one header; real ones have a few hundred (RPM itself caps at 0xffff)."""
MAX_PACKAGES = 100_000
"""Rows read from one database; a real distribution image has a few thousand."""
SQLITE_STEPS = 50_000_000
"""SQLite VM steps before a query is abandoned: a crafted database cannot stall the reader."""

_TAGS = {1000: "name", 1001: "version", 1002: "release", 1003: "epoch", 1022: "arch"}
_SOURCERPM = 1044
_INT32, _STRING, _I18NSTRING = 4, 6, 9
_ENTRY = struct.Struct(">iiii")


class HeaderError(ScanError, ValueError):
    """An RPM header blob that is truncated or whose index points outside its data."""


@dataclass(frozen=True)
class Header:
    """The fields of one RPM header that an inventory needs."""

    name: str
    version: str
    release: str
    epoch: int | None
    arch: str
    sourcerpm: str

    @property
    def evr(self) -> str:
        """``[epoch:]version-release``, RPM's own spelling (and syft's) of a package version."""
        prefix = f"{self.epoch}:" if self.epoch is not None else ""
        return f"{prefix}{self.version}-{self.release}"


def matches(path: str) -> bool:
    return path in PATHS


def parse(path: str, data: bytes) -> list[Package]:
    packages = []
    for number, blob in _blobs(path, data):
        try:
            header = parse_header(blob)
        except HeaderError as exc:
            log.info("%s: package %s skipped: %s", path, number, exc)
            continue
        if not header.name or not header.version:
            continue
        source_name, source_version = source_of(header.sourcerpm)
        packages.append(
            Package(
                ecosystem="rpm",
                name=header.name,
                version=header.evr,
                path=path,
                source_name=source_name,
                source_version=source_version,
                arch=header.arch,
            )
        )
    return packages


def _blobs(path: str, data: bytes) -> list[tuple[int, bytes]]:
    """The header blobs of the ``Packages`` table ([] when the file is no usable database)."""
    if len(data) < 100 or not data.startswith(b"SQLite format 3\0"):
        log.info("%s is not an SQLite database; skipped", path)
        return []
    image = bytearray(data)
    image[18:20] = b"\x01\x01"  # WAL mode cannot be opened in memory; the main file is complete
    conn = sqlite3.connect(":memory:")
    conn.text_factory = bytes  # a hostile TEXT value must not fail decoding
    try:
        conn.deserialize(bytes(image))
        conn.set_progress_handler(_Budget(SQLITE_STEPS), 1000)
        rows = conn.execute("SELECT hnum, blob FROM Packages LIMIT ?", (MAX_PACKAGES,)).fetchall()
    except (sqlite3.Error, ValueError) as exc:  # ValueError: an undecodable SQLite message
        log.info("%s: unreadable RPM database (%r); skipped", path, exc)
        return []
    finally:
        conn.close()
    return [(n, b) for n, b in rows if isinstance(b, bytes)]


class _Budget:
    """SQLite progress handler: a non-zero return interrupts the query."""

    def __init__(self, steps: int) -> None:
        self.left = steps // 1000

    def __call__(self) -> int:
        self.left -= 1
        return int(self.left < 0)


def parse_header(blob: bytes) -> Header:
    """Read an RPM header as stored in rpmdb (no lead, no 8-byte magic).

    Layout: index count ``il`` and data length ``dl`` (big-endian int32), ``il`` entries of
    (tag, type, offset, count), then ``dl`` bytes of data the offsets point into.
    """
    if len(blob) < 8:
        raise HeaderError("shorter than its 8-byte preamble")
    count, size = struct.unpack_from(">ii", blob)
    if not 0 < count <= MAX_ENTRIES or size < 0:
        raise HeaderError(f"bad index count {count} or data length {size}")
    start = 8 + count * _ENTRY.size
    if start + size > len(blob):
        raise HeaderError(f"index and data ({start + size} bytes) exceed the blob ({len(blob)})")
    store = blob[start : start + size]
    fields: dict[str, str | int] = {}
    for index in range(count):
        tag, kind, offset, items = _ENTRY.unpack_from(blob, 8 + index * _ENTRY.size)
        if tag in _TAGS or tag == _SOURCERPM:
            fields[_TAGS.get(tag, "sourcerpm")] = _value(store, kind, offset, items)
    epoch = fields.get("epoch")
    return Header(
        name=str(fields.get("name", "")),
        version=str(fields.get("version", "")),
        release=str(fields.get("release", "")),
        epoch=epoch if isinstance(epoch, int) else None,
        arch=str(fields.get("arch", "")),
        sourcerpm=str(fields.get("sourcerpm", "")),
    )


def _value(store: bytes, kind: int, offset: int, items: int) -> str | int:
    if not 0 <= offset < len(store) or items < 1:
        raise HeaderError(f"entry offset {offset} outside the data ({len(store)} bytes)")
    if kind == _INT32:
        if offset + 4 > len(store):
            raise HeaderError("INT32 entry runs past the data")
        return int(struct.unpack_from(">i", store, offset)[0])
    if kind in (_STRING, _I18NSTRING):
        end = store.find(b"\0", offset)
        if end < 0:
            raise HeaderError("string entry is not NUL-terminated within the data")
        return store[offset:end].decode("utf-8", "replace")
    raise HeaderError(f"unexpected entry type {kind}")


def source_of(sourcerpm: str) -> tuple[str, str]:
    """``openssl-3.0.7-24.el9.src.rpm`` -> (``openssl``, ``3.0.7-24.el9``); ("", "") if odd.

    The name is everything before the last two dashes (RPM names may contain dashes, versions
    and releases may not)."""
    if not sourcerpm.endswith(".src.rpm"):
        return "", ""
    parts = sourcerpm.removesuffix(".src.rpm").rsplit("-", 2)
    return (parts[0], f"{parts[1]}-{parts[2]}") if len(parts) == 3 else ("", "")


ECOSYSTEM = Ecosystem("rpm", matches, parse)
