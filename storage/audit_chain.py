"""The access log's hash chain in the database: chained inserts, checkpoints, retention.

Rows only; what a hash is and how a chain is checked is ``storage/audit_hashing.py``'s business.
One writer per chain (a gatekeeper process's access-log writer), so a chain's head is kept in
memory and read back from the database only when the writer cannot be sure of it (at start,
and after a failed write whose commit may have happened all the same).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import audit_hashing as hashing
from storage.audit import AccessRecord, storable
from storage.models import AccessLog, Base, BigId
from storage.prepared import table
from storage.timeutil import UTCDateTime, utc


class AuditCheckpointRow(Base):
    """A signed statement: position ``seq`` of ``chain`` had ``row_hash`` at ``time``."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (UniqueConstraint("chain", "seq", name="uq_audit_checkpoints_chain_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chain: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    row_hash: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    envelope: Mapped[str | None] = mapped_column(Text)
    """The DSSE envelope (JSON) signed by the gatekeeper's key; NULL when it had none."""


class AuditLegacyRow(Base):
    """The last row written before the chain existed (migration 0020)."""

    __tablename__ = "audit_legacy"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    max_id: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class Head:
    """Where a chain ends: the next row is ``seq + 1`` and follows ``hash``."""

    chain: str
    seq: int
    hash: str


async def head(session: AsyncSession, chain: str) -> Head | None:
    """The chain's head as stored (its newest row, else its opening checkpoint)."""
    row = (
        await session.execute(
            select(AccessLog.seq, AccessLog.row_hash)
            .where(AccessLog.chain == chain)
            .order_by(AccessLog.seq.desc())
            .limit(1)
        )
    ).first()
    if row is not None and row.seq is not None and row.row_hash is not None:
        return Head(chain, int(row.seq), str(row.row_hash))
    opening = await session.scalar(
        select(AuditCheckpointRow.row_hash).where(
            AuditCheckpointRow.chain == chain, AuditCheckpointRow.seq == 0
        )
    )
    return None if opening is None else Head(chain, 0, str(opening))


async def insert_chained(
    session: AsyncSession, at: Head, records: Sequence[AccessRecord], *, skip_present: bool
) -> Head:
    """Insert ``records`` as the next rows of the chain ending at ``at``; the new head.

    ``skip_present``: leave out records whose request id is stored already (a replayed spool,
    a batch retried after a commit whose answer was lost) instead of failing on them. Without
    it a duplicate fails the whole batch (the writer then retries with it), so the common
    path costs no extra read.
    """
    if skip_present and records:
        ids = [r.request_id for r in records]
        present = set(
            (
                await session.scalars(
                    select(AccessLog.request_id).where(AccessLog.request_id.in_(ids))
                )
            ).all()
        )
        records = [r for r in records if r.request_id not in present]
    chained = chain(at, records)
    await insert_rows(session, chained.rows)
    return chained.head


@dataclass(frozen=True)
class Chained:
    """Rows made the next links of a chain, ready to insert, and the head they make."""

    rows: list[dict[str, Any]]
    head: Head


def chain(at: Head, records: Sequence[AccessRecord]) -> Chained:
    """``records`` as the rows following ``at``: each with its position and hash. Needs no
    database, so a writer that knows its head computes this before its write turn (on SQLite
    the one turn of the host: the hashing is a third of a batch's CPU)."""
    rows = []
    seq, previous = at.seq, at.hash
    for record in records:
        values = storable(record)
        seq += 1
        previous = hashing.row_hash(previous, hashing.content(values, at.chain, seq))
        values.update(chain=at.chain, seq=seq, row_hash=previous)
        rows.append(values)
    return Chained(rows, Head(at.chain, seq, previous))


SQLITE_ROWS_PER_STATEMENT = 500
"""Rows per multi-row ``INSERT`` on SQLite (21 columns: 10,500 of its 32,766 parameters)."""


async def insert_rows(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert chained rows. On SQLite as one ``INSERT ... VALUES (...), (...)`` per
    :data:`SQLITE_ROWS_PER_STATEMENT` rows, the values converted once per column type here:
    the ORM's bulk insert cost ~43 us of CPU per row, and ``executemany`` has Python's
    ``sqlite3`` release the interpreter lock around every row, each a wait to get it back in
    a process whose serving loop is busy, all of it inside the host's one write turn. On
    PostgreSQL the ORM's insert (asyncpg's pipelined ``executemany``) stays: a SQL text per
    batch size would fill the server's statement cache."""
    if not rows:
        return
    connection = await session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        await session.execute(insert(AccessLog), list(rows))
        return
    columns_of = table(AccessLog).c
    columns = list(rows[0])
    processors = [columns_of[name].type.bind_processor(dialect) for name in columns]
    names = ", ".join(columns)
    placeholders = "(" + ",".join("?" * len(columns)) + ")"
    for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
        chunk = rows[start : start + SQLITE_ROWS_PER_STATEMENT]
        values = tuple(
            value if process is None else process(value)
            for row in chunk
            for process, value in zip(processors, (row[name] for name in columns), strict=True)
        )
        sql = f"INSERT INTO access_log ({names}) VALUES " + ",".join([placeholders] * len(chunk))
        await connection.exec_driver_sql(sql, values)


async def add_checkpoint(
    session: AsyncSession, at: Head, time: datetime, envelope: str | None
) -> None:
    """Store a checkpoint of ``at`` (a second one of the same position changes nothing)."""
    bind = session.bind
    dialect = postgresql if bind is not None and bind.dialect.name == "postgresql" else sqlite
    await session.execute(
        dialect.insert(AuditCheckpointRow)
        .values(chain=at.chain, seq=at.seq, row_hash=at.hash, time=time, envelope=envelope)
        .on_conflict_do_nothing()
    )


async def newest_checkpoint(session: AsyncSession) -> AuditCheckpointRow | None:
    """The newest signed checkpoint of any chain (a new chain's anchor)."""
    return (
        await session.scalars(
            select(AuditCheckpointRow)
            .where(AuditCheckpointRow.envelope.is_not(None))
            .order_by(AuditCheckpointRow.id.desc())
            .limit(1)
        )
    ).first()


async def checkpoints(session: AsyncSession) -> list[AuditCheckpointRow]:
    return list(
        (await session.scalars(select(AuditCheckpointRow).order_by(AuditCheckpointRow.id))).all()
    )


async def legacy_max_id(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.max(AuditLegacyRow.max_id))) or 0)


async def rows(session: AsyncSession, batch: int = 2000) -> AsyncIterator[hashing.Row]:
    """Every row, in id order, read in batches (the table may be large)."""
    after = -1
    fields = AccessRecord.__dataclass_fields__
    while True:
        found = (
            await session.scalars(
                select(AccessLog).where(AccessLog.id > after).order_by(AccessLog.id).limit(batch)
            )
        ).all()
        for row in found:
            values: dict[str, Any] = {name: getattr(row, name) for name in fields}
            values["time"] = utc(row.time)
            yield hashing.Row(row.id, row.chain, row.seq, row.row_hash, values)
        if len(found) < batch:
            return
        after = found[-1].id


async def prune(session: AsyncSession, before: datetime) -> dict[str, int]:
    """Delete the rows older than ``before`` that a signed checkpoint lets verification start
    after: per chain, up to the newest signed checkpoint whose row is older than ``before``.
    Returns, per chain, the position rows were deleted up to (chains left alone are absent)."""
    marks = (
        await session.execute(
            select(AuditCheckpointRow.chain, func.max(AuditCheckpointRow.seq))
            .join(
                AccessLog,
                (AccessLog.chain == AuditCheckpointRow.chain)
                & (AccessLog.seq == AuditCheckpointRow.seq),
            )
            .where(AuditCheckpointRow.envelope.is_not(None), AccessLog.time < before)
            .group_by(AuditCheckpointRow.chain)
        )
    ).all()
    done = {}
    for chain, seq in marks:
        await session.execute(
            delete(AccessLog).where(AccessLog.chain == chain, AccessLog.seq <= seq)
        )
        done[str(chain)] = int(seq)
    return done


def as_export(row: hashing.Row) -> dict[str, Any]:
    """A row as ``gatekeeper audit export`` writes it: what its hash covers, and the hash."""
    line: dict[str, Any] = {"type": "row", "id": row.id, "hash": row.hash}
    if row.chain is not None and row.seq is not None:
        line["content"] = hashing.content(row.values, row.chain, row.seq)
    else:
        line["content"] = {
            name: hashing.content(row.values, "", 0)[name] for name in hashing.FIELDS
        }
    return line
