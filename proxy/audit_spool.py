"""The access log's local journal: every row is on this replica's disk before it is only in
memory, so a crash (``kill -9``, the OOM killer) loses none.

Rows are written to the database in batches off the request path (``proxy.audit``), which is
what keeps pulls fast; until a batch commits, its rows would live only in memory. So the writer
appends each row here first, as one JSON line with a ``write()`` of its own (in the kernel's
page cache the moment it returns, which a dying process cannot take back):

- ``b`` (begun), when a response starts (``on_response_prepare``): what is known then (who,
  what, the status being sent). If the process dies mid-response, this is the row.
- ``r`` (row), when the request is over: the complete row, which supersedes its ``b``.

A segment file is deleted once every ``r`` in it is committed; a response still running when a
segment is rotated has its ``b`` written again into the next one. At start-up a replica replays
the segments of every process that is gone (its lock is free): rows are inserted with ``ON
CONFLICT (request_id) DO NOTHING``, so a row already committed, or replayed before, is not added
twice. ``fsync`` runs every ``audit.spool_sync_seconds`` in a worker thread: a machine that loses
power may lose that last stretch; a process that crashes loses nothing.

Files, in a directory per database under ``audit.spool_dir`` (one per replica, or shared: each
process has its own files, and rows are only ever replayed into the database they were meant
for, whatever else shares the directory)::

    <database key>/<process>.lock           held (flock) while the process lives
    <database key>/<process>.<seq>.spool    JSON lines {"k": "b"|"r", "row": {...}}
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import async_sessionmaker

from storage.audit import AccessRecord, insert_records

if TYPE_CHECKING:
    from proxy.audit_ledger import Ledger

log = logging.getLogger("gatekeeper.audit")

SEGMENT_BYTES = 16 << 20
"""A segment is rotated once it holds this much; it is deleted when its rows are committed."""
BEGUN, ROW = "b", "r"
UNFINISHED = "the gatekeeper stopped before this answer was complete (bytes_out unknown)"
"""Appended to the reason of a row replayed from its ``b`` line alone."""


def directory_for(root: Path, database_url: str) -> Path:
    """The spool directory of one database under ``root``: named by a hash of its URL (the
    password left out, so rotating it does not orphan a spool)."""
    shown = make_url(database_url).render_as_string(hide_password=True)
    return root / hashlib.sha256(shown.encode()).hexdigest()[:16]


class SpoolError(Exception):
    """The spool cannot be written (its directory unwritable, the disk full)."""


@dataclass
class _Segment:
    seq: int
    path: Path
    fd: int
    size: int = 0
    pending: int = 0
    """``r`` lines in it not yet committed."""


def encode(kind: str, record: AccessRecord) -> bytes:
    line = json.dumps({"k": kind, "row": record.as_json()}, separators=(",", ":"))
    return line.encode() + b"\n"


def decode(line: bytes) -> tuple[str, AccessRecord]:
    """One spool line; ValueError for a line that is not one (a torn last write)."""
    doc = json.loads(line)
    kind, row = doc["k"], dict(doc["row"])
    if kind not in (BEGUN, ROW):
        raise ValueError(f"unknown line kind {kind!r}")
    row["time"] = datetime.fromisoformat(row["time"])
    return kind, AccessRecord(**row)


@dataclass
class Spool:
    """This process's spool: append, learn what was committed, rotate, and clean up."""

    directory: Path
    sync_seconds: float
    name: str = field(default_factory=lambda: f"{os.getpid()}-{uuid.uuid4().hex[:12]}")
    failed: str | None = None
    """Why the last append failed (the writer refuses new requests meanwhile), or None."""
    _lock_fd: int = -1
    _segments: dict[int, _Segment] = field(default_factory=dict)
    _current: _Segment | None = None
    _begun: dict[str, bytes] = field(default_factory=dict)
    _dirty: bool = False

    def open(self) -> None:
        """Create the directory, take this process's lock, open the first segment."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self._lock_path(self.name), os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._rotate()
        except OSError as exc:
            raise SpoolError(
                f"cannot open the access-log spool in {self.directory}: {exc}"
            ) from exc

    # -- appending ---------------------------------------------------------------------------

    def begin(self, record: AccessRecord) -> None:
        """A response starts: its provisional row, until :meth:`row` replaces it."""
        line = encode(BEGUN, record)
        self._begun[record.request_id] = line
        self._append(line)

    def row(self, record: AccessRecord) -> int | None:
        """The complete row; returns the segment to :meth:`committed` it to, or None when it
        could not be written (then it lives in memory only, and :attr:`failed` says why)."""
        self._begun.pop(record.request_id, None)
        segment = self._append(encode(ROW, record))
        if segment is not None:
            segment.pending += 1
            return segment.seq
        return None

    def _append(self, line: bytes) -> _Segment | None:
        try:
            if self._current is None or self._current.size >= SEGMENT_BYTES:
                self._rotate()
            assert self._current is not None
            _write_all(self._current.fd, line)
            if self.sync_seconds == 0:
                os.fdatasync(self._current.fd)
        except (OSError, SpoolError) as exc:
            if self.failed is None:
                log.error("cannot write the access-log spool (rows kept in memory): %s", exc)
            self.failed = str(exc)
            self._current = None  # the next append tries a fresh segment
            return None
        self.failed = None
        self._current.size += len(line)
        self._dirty = True
        return self._current

    def _rotate(self) -> None:
        """A new segment; responses still running get their ``b`` line again in it, so the
        old one can go once its rows are committed."""
        seq = max(self._segments, default=0) + 1
        path = self.directory / f"{self.name}.{seq:08d}.spool"
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_EXCL, 0o600)
        segment = _Segment(seq, path, fd)
        self._segments[seq] = segment
        _sync_directory(self.directory)
        carried = b"".join(self._begun.values())
        if carried:
            _write_all(fd, carried)
            segment.size += len(carried)
        previous, self._current = self._current, segment
        if previous is not None:
            self._forget_done(previous)

    # -- after the database took rows -------------------------------------------------------

    def committed(self, segments: list[int | None]) -> None:
        """Rows appended to these segments are in the database: segments no longer current
        whose rows are all committed are deleted."""
        for seq in segments:
            segment = self._segments.get(seq) if seq is not None else None
            if segment is not None:
                segment.pending -= 1
        for segment in list(self._segments.values()):
            if segment is not self._current:
                self._forget_done(segment)

    def retry(self) -> None:
        """After a failed append: try a fresh segment now (the writer calls this while it
        refuses requests, which would otherwise never append again)."""
        if self.failed is None:
            return
        try:
            self._rotate()
        except OSError as exc:
            self.failed = str(exc)
            return
        log.info("the access-log spool is writable again")
        self.failed = None

    def _forget_done(self, segment: _Segment) -> None:
        if segment.pending > 0:
            return
        del self._segments[segment.seq]
        with contextlib.suppress(OSError):
            os.close(segment.fd)
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()

    async def sync(self) -> None:
        """fsync what was appended since the last call (in a thread: it may take a while)."""
        if not self._dirty or self._current is None:
            return
        self._dirty = False
        fd = self._current.fd
        try:
            await asyncio.to_thread(os.fdatasync, fd)
        except OSError as exc:  # the fd may have been closed by a rotation meanwhile
            log.debug("spool fsync: %s", exc)

    def close(self, *, drained: bool) -> None:
        """Stop. ``drained``: every row is committed, so the files go; else they stay for the
        next start to replay."""
        for segment in list(self._segments.values()):
            with contextlib.suppress(OSError):
                os.fsync(segment.fd)
                os.close(segment.fd)
            if drained:
                with contextlib.suppress(FileNotFoundError):
                    segment.path.unlink()
        self._segments.clear()
        self._current = None
        if self._lock_fd >= 0:
            if drained:
                with contextlib.suppress(FileNotFoundError):
                    self._lock_path(self.name).unlink()
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _lock_path(self, name: str) -> Path:
        return self.directory / f"{name}.lock"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_directory(directory: Path) -> None:
    """A new file's name is on disk too (else a power loss could lose the file itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- replay at start-up ----------------------------------------------------------------------


@dataclass(frozen=True)
class Orphan:
    """The spool of a process that is gone, locked for replay by this one."""

    name: str
    lock_fd: int
    segments: tuple[Path, ...]

    def rows(self) -> tuple[list[AccessRecord], int]:
        """Its rows, one per request id (a complete row wins over a begun one), and how many
        are unfinished answers."""
        found: dict[str, tuple[str, AccessRecord]] = {}
        for kind, record in self._lines():
            known = found.get(record.request_id)
            if known is None or known[0] == BEGUN:
                found[record.request_id] = (kind, record)
        unfinished = [r for k, r in found.values() if k == BEGUN]
        rows = [r for k, r in found.values() if k == ROW]
        return rows + [_unfinished(r) for r in unfinished], len(unfinished)

    def _lines(self) -> Iterator[tuple[str, AccessRecord]]:
        for path in self.segments:
            with path.open("rb") as spooled:
                for number, line in enumerate(spooled, 1):
                    try:
                        yield decode(line)
                    except (ValueError, KeyError, TypeError) as exc:
                        # A line torn by a power loss; nothing after a torn line is torn.
                        log.warning("spool %s line %d unreadable, skipped: %s", path, number, exc)

    def remove(self, directory: Path) -> None:
        """Replayed: its files go, the lock last (held until then, so nobody replays it too)."""
        for path in self.segments:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (directory / f"{self.name}.lock").unlink()
        os.close(self.lock_fd)

    def release(self) -> None:
        """Not replayed (the database failed): left for the next start."""
        os.close(self.lock_fd)


def _unfinished(record: AccessRecord) -> AccessRecord:
    reason = f"{record.reason}; {UNFINISHED}" if record.reason else UNFINISHED
    return replace(record, reason=reason[:2000])


def orphans(directory: Path, own: str) -> list[Orphan]:
    """Spools of processes that are gone (their lock is free), each locked for this replay.
    A process still running holds its lock, so a shared directory is safe."""
    if not directory.is_dir():
        return []
    found = []
    for lock in sorted(directory.glob("*.lock")):
        name = lock.name[: -len(".lock")]
        if name == own:
            continue
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:
            continue  # replayed by another process just now
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # alive
        if not lock.exists():  # replayed and removed between our open and our lock
            os.close(fd)
            continue
        segments = tuple(sorted(directory.glob(f"{name}.*.spool")))
        found.append(Orphan(name, fd, segments))
    return found


async def replay(
    directory: Path,
    own: str,
    db: async_sessionmaker[Any],
    batch: int,
    ledger: Ledger | None = None,
) -> int:
    """Write the rows of every gone process's spool to the database, then delete its files;
    returns the rows replayed. Idempotent: a row already there is not added again. A database
    failure is raised (the start fails) and leaves the files for the next start. With
    ``ledger`` the rows join this process's chain (the gone process's chain ends where its
    last committed row is)."""
    total = 0
    waiting = orphans(directory, own)
    try:
        while waiting:
            orphan = waiting[0]
            rows, unfinished = orphan.rows()
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                async with db() as session, session.begin():
                    if ledger is None:
                        await insert_records(session, chunk)
                    else:
                        head = await ledger.insert(session, chunk, replay=True)
                if ledger is not None:
                    ledger.advance(head)
            waiting.pop(0).remove(directory)
            total += len(rows)
            log.warning(
                "access log: replayed %d rows (%d of answers cut short) from the spool of %s, "
                "a gatekeeper that did not stop cleanly",
                len(rows),
                unfinished,
                orphan.name,
            )
    finally:
        for orphan in waiting:  # not replayed (the database failed): left for the next start
            orphan.release()
    return total
