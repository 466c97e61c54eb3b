"""The access log's spool: what a process that died left in it reaches the database once,
complete rows over provisional ones, and nothing of a process still running is touched."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config.settings import AuditSettings
from proxy import audit_spool
from proxy.audit import AuditWriter
from proxy.audit_spool import UNFINISHED, Spool, directory_for, orphans, replay
from storage.audit import insert_records
from storage.errors import DatabaseUnavailable
from storage.models import AccessLog
from tests.fakes.database import FlakyDatabase
from tests.support.audit import record


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """The spool directory (the database of the ``db`` fixture lives in ``tmp_path``)."""
    return tmp_path / "spool"


def crash(spool: Spool) -> None:
    """What a SIGKILL leaves: the files as they are, the lock released by the kernel."""
    os.close(spool._lock_fd)
    spool._lock_fd = -1


async def stored(db: Any) -> dict[str, AccessLog]:
    async with db() as session:
        return {row.request_id: row for row in await session.scalars(select(AccessLog))}


async def test_a_crashed_process_rows_are_replayed_complete_over_begun(db: Any, tmp: Path) -> None:
    spool = Spool(tmp, sync_seconds=1.0)
    spool.open()
    spool.begin(replace(record(1), status=200, bytes_out=0))
    spool.row(replace(record(1), bytes_out=1234))  # finished: the complete row wins
    spool.begin(replace(record(2), status=200, reason="pulled"))  # died mid-answer
    spool.row(record(3))  # finished, never reached the database
    crash(spool)
    assert await replay(tmp, "me", db, batch=2) == 3
    rows = await stored(db)
    assert sorted(rows) == ["r1", "r2", "r3"]
    assert rows["r1"].bytes_out == 1234 and rows["r1"].reason is None
    assert rows["r2"].status == 200 and rows["r2"].reason == f"pulled; {UNFINISHED}"
    assert list(tmp.iterdir()) == [], "replayed spools are removed"
    assert await replay(tmp, "me", db, batch=2) == 0


async def test_replay_adds_no_row_the_database_already_has(db: Any, tmp: Path) -> None:
    """The process died after a batch committed but before its segment was deleted."""
    spool = Spool(tmp, sync_seconds=1.0)
    spool.open()
    for n in range(4):
        spool.row(record(n))
    async with db() as session, session.begin():
        await insert_records(session, [record(0), record(1)])
    crash(spool)
    await replay(tmp, "me", db, batch=100)
    async with db() as session:
        ids = list(await session.scalars(select(AccessLog.request_id).order_by(AccessLog.id)))
    assert ids == ["r0", "r1", "r2", "r3"]


async def test_a_running_process_spool_is_left_alone(db: Any, tmp: Path) -> None:
    """Replicas may share the directory: only spools whose process is gone are replayed."""
    alive = Spool(tmp, sync_seconds=1.0)
    alive.open()
    alive.row(record(7))
    assert orphans(tmp, "me") == []
    assert await replay(tmp, "me", db, batch=10) == 0
    assert await stored(db) == {}
    alive.close(drained=False)  # a stop that could not drain: its rows wait for the next start
    assert await replay(tmp, "me", db, batch=10) == 1


async def test_a_torn_last_line_is_skipped(db: Any, tmp: Path) -> None:
    spool = Spool(tmp, sync_seconds=1.0)
    spool.open()
    spool.row(record(1))
    spool.row(record(2))
    crash(spool)
    (segment,) = tmp.glob("*.spool")
    segment.write_bytes(segment.read_bytes()[:-25])  # a power loss mid-write
    assert await replay(tmp, "me", db, batch=10) == 1
    assert list(await stored(db)) == ["r1"]


async def test_segments_go_once_committed_and_running_answers_carry_over(
    db: Any, tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_spool, "SEGMENT_BYTES", 600)
    spool = Spool(tmp, sync_seconds=1.0)
    spool.open()
    spool.begin(record(0))  # a long download, still running through every rotation
    segments = [spool.row(record(n)) for n in range(1, 12)]
    assert len(set(segments)) > 2, "rotated"
    spool.committed(segments)
    (left,) = tmp.glob("*.spool")  # only the current segment stays
    assert b'"request_id":"r0"' in left.read_bytes(), "the running answer's row carried over"
    crash(spool)
    await replay(tmp, "me", db, batch=10)
    rows = await stored(db)
    assert UNFINISHED in (rows["r0"].reason or "")
    # The current segment's committed rows come again: the database keeps one of each.
    assert set(rows) <= {"r0", *(f"r{n}" for n in range(1, 12))}


async def test_the_writer_keeps_what_the_database_refused_until_the_next_start(
    db: Any, tmp: Path
) -> None:
    directory = directory_for(tmp, "sqlite+aiosqlite:///x.db")
    spool = Spool(directory, sync_seconds=0.01)
    spool.open()
    down = FlakyDatabase(failures=10**9)
    writer = AuditWriter(
        down,  # type: ignore[arg-type]
        AuditSettings(flush_interval_seconds=0.01, spool_sync_seconds=0.01),
        spool=spool,
    )
    writer.start()
    for n in range(3):
        writer.submit(record(n))
    await writer.close(timeout=0.3)
    assert await replay(directory, "next", db, batch=10) == 3


async def test_a_spool_that_cannot_be_written_refuses_requests_until_it_can(
    tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp, sync_seconds=1.0)
    spool.open()
    writer = AuditWriter(FlakyDatabase(failures=0), AuditSettings(), spool=spool)  # type: ignore[arg-type]

    def full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    writer.submit(record(1))
    refusal = writer.refusal()
    assert refusal is not None and refusal.code.status == 503
    assert "spool" in refusal.message
    monkeypatch.undo()
    spool.retry()
    assert writer.refusal() is None
    spool.close(drained=False)


async def test_a_replay_the_database_refuses_leaves_the_spool_for_the_next_start(
    db: Any, tmp: Path
) -> None:
    spool = Spool(tmp, sync_seconds=1.0)
    spool.open()
    spool.row(record(1))
    crash(spool)
    with pytest.raises(DatabaseUnavailable):
        await replay(tmp, "me", FlakyDatabase(failures=1), batch=10)  # type: ignore[arg-type]
    assert await replay(tmp, "me", db, batch=10) == 1
    assert list(await stored(db)) == ["r1"]
