"""The access log's hash chain (issue 18): rows chained as the writer inserts them, signed
checkpoints, and verification naming the first row changed, deleted, inserted or reordered."""

from __future__ import annotations

import base64
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from config.settings import AuditSettings, Settings
from proxy.attest import checkpoints as signed
from proxy.attest import keys as attest_keys
from proxy.attest.dsse import EnvelopeError, Signer
from proxy.audit import AuditWriter
from proxy.audit_ledger import Ledger
from proxy.auth.keyring import generate
from storage import audit_chain
from storage.audit import storable
from storage.audit_hashing import ChainCheck, Report
from storage.models import AccessLog
from tests.fakes.database import FlakyDatabase
from tests.support.audit import record

KEK = base64.b64encode(os.urandom(32)).decode()


async def _write(db: Any, ledger: Ledger, count: int, start: int = 0) -> None:
    writer = AuditWriter(
        db, AuditSettings(flush_interval_seconds=0.01, batch_size=3), ledger=ledger
    )
    writer.start()
    for n in range(start, start + count):
        writer.submit(record(n))
    await writer.close(timeout=10)


async def _verify(db: Any, signer: Signer) -> Report:
    async with db() as session:
        stored = await audit_chain.checkpoints(session)
        good = [signed.read(c.envelope, {signer.kid: signer.public}) for c in stored]
        check = ChainCheck(good, legacy_max_id=await audit_chain.legacy_max_id(session))
        async for row in audit_chain.rows(session):
            check.add(row)
    return check.finish()


@pytest.fixture
def signer() -> Signer:
    return Signer.of(generate())


async def test_an_untouched_log_verifies_and_a_stop_signs_a_checkpoint(
    db: Any, signer: Signer
) -> None:
    ledger = Ledger(db, signer, interval_seconds=3600)
    await ledger.open()
    await _write(db, ledger, 7)
    report = await _verify(db, signer)
    assert report.ok, report.problems
    assert (report.rows, report.chains, report.after_last_checkpoint) == (7, 1, 0)
    async with db() as session:
        marks = [(c.seq, c.chain) for c in await audit_chain.checkpoints(session)]
    assert marks == [(0, ledger.chain), (7, ledger.chain)]  # opening, and the stop


async def test_a_batch_of_several_statements_is_stored_whole_and_verifies(
    db: Any, signer: Signer
) -> None:
    """One batch larger than a SQLite statement's share (hashed before the write turn, then
    inserted as multi-row statements): every row stored as it was written, in order, and the
    chain verifies; no NULs or odd values lost on the way (``storable``)."""
    count = audit_chain.SQLITE_ROWS_PER_STATEMENT * 2 + 7
    ledger = Ledger(db, signer, interval_seconds=3600)
    await ledger.open()
    records = [
        replace(record(n), path=f"/v2/a\x00b/{n}", reason="x\x00y" if n % 2 else None)
        for n in range(count)
    ]
    writer = AuditWriter(
        db, AuditSettings(flush_interval_seconds=0.01, batch_size=count), ledger=ledger
    )
    writer.start()
    for one in records:
        writer.submit(one)
    await writer.close(timeout=30)
    report = await _verify(db, signer)
    assert report.ok, report.problems
    assert report.rows == count
    async with db() as session:
        stored = (await session.scalars(select(AccessLog).order_by(AccessLog.id))).all()
    assert [r.seq for r in stored] == list(range(1, count + 1))
    fields = record(0).values()
    for row, written in zip(stored, records, strict=True):
        assert {name: getattr(row, name) for name in fields} == storable(written)


async def test_each_kind_of_tampering_is_named(db: Any, signer: Signer) -> None:
    ledger = Ledger(db, signer, interval_seconds=3600)
    await ledger.open()
    await _write(db, ledger, 10)
    async with db() as session:
        ids = list((await session.scalars(select(AccessLog.id).order_by(AccessLog.id))).all())

    async def tamper(statement: Any) -> Report:
        async with db() as session, session.begin():
            await session.execute(statement)
        return await _verify(db, signer)

    # Changed: the path of the fourth row.
    report = await tamper(update(AccessLog).where(AccessLog.id == ids[3]).values(path="/x"))
    first = report.first()
    assert first is not None and first.row == ids[3] and "changed" in first.message
    await tamper(update(AccessLog).where(AccessLog.id == ids[3]).values(path="/v2/"))
    assert (await _verify(db, signer)).ok
    # Deleted: the sixth row; the seventh is named.
    report = await tamper(delete(AccessLog).where(AccessLog.id == ids[5]))
    first = report.first()
    assert first is not None and first.row == ids[6] and "deleted" in first.message


async def test_inserted_and_reordered_rows_are_named(db: Any, signer: Signer) -> None:
    ledger = Ledger(db, signer, interval_seconds=3600)
    await ledger.open()
    await _write(db, ledger, 4)
    async with db() as session, session.begin():
        await session.execute(insert(AccessLog).values(**storable(record(99))))
        rows = (await session.scalars(select(AccessLog).order_by(AccessLog.id))).all()
        inserted = rows[-1].id
    report = await _verify(db, signer)
    first = report.first()
    assert first is not None and first.row == inserted and "inserted" in first.message
    async with db() as session, session.begin():
        await session.execute(delete(AccessLog).where(AccessLog.id == inserted))
        # Swap the positions of rows 2 and 3 (their hashes go with them).
        a, b = rows[1], rows[2]
        await session.execute(
            update(AccessLog).where(AccessLog.id == a.id).values(seq=b.seq, row_hash=b.row_hash)
        )
        await session.execute(
            update(AccessLog).where(AccessLog.id == b.id).values(seq=a.seq, row_hash=a.row_hash)
        )
    first = (await _verify(db, signer)).first()
    assert first is not None and first.row == rows[1].id


async def test_a_consistent_rewrite_before_a_checkpoint_is_caught(db: Any, signer: Signer) -> None:
    """Recomputing every hash after an edit (no secret needed) still contradicts the signed
    checkpoint."""
    ledger = Ledger(db, signer, interval_seconds=3600)
    await ledger.open()
    await _write(db, ledger, 5)
    async with db() as session, session.begin():
        opening = await session.scalar(
            select(audit_chain.AuditCheckpointRow.row_hash).where(
                audit_chain.AuditCheckpointRow.seq == 0
            )
        )
        await session.execute(delete(AccessLog))
        forged = [replace(record(n), identity="mallory") for n in range(5)]
        await audit_chain.insert_chained(
            session, audit_chain.Head(ledger.chain, 0, str(opening)), forged, skip_present=False
        )
    first = (await _verify(db, signer)).first()
    assert first is not None and "signed checkpoint" in first.message


async def test_pruning_keeps_the_rest_verifiable(db: Any, signer: Signer) -> None:
    ledger = Ledger(db, signer, interval_seconds=3600)
    await ledger.open()
    await _write(db, ledger, 4)  # the stop signs position 4
    ledger = Ledger(db, signer, interval_seconds=3600)
    await ledger.open()
    await _write(db, ledger, 3, start=10)
    async with db() as session, session.begin():
        done = await audit_chain.prune(session, datetime.now(UTC) + timedelta(seconds=1))
    assert len(done) == 2
    report = await _verify(db, signer)
    assert report.ok, report.problems
    assert report.rows == 0
    # Deleting below a position no checkpoint names is not retention: it is named.
    ledger = Ledger(db, signer, interval_seconds=3600)
    await ledger.open()
    await _write(db, ledger, 3, start=20)
    async with db() as session, session.begin():
        await session.execute(delete(AccessLog).where(AccessLog.seq == 1))
    first = (await _verify(db, signer)).first()
    assert first is not None and "deleted" in first.message


async def test_a_whole_earlier_chain_deleted_breaks_the_next(db: Any, signer: Signer) -> None:
    first_run = Ledger(db, signer, interval_seconds=3600)
    await first_run.open()
    await _write(db, first_run, 2)
    second = Ledger(db, signer, interval_seconds=3600)
    await second.open()
    await _write(db, second, 2, start=10)
    async with db() as session, session.begin():
        await session.execute(delete(AccessLog).where(AccessLog.chain == first_run.chain))
        await session.execute(
            delete(audit_chain.AuditCheckpointRow).where(
                audit_chain.AuditCheckpointRow.chain == first_run.chain
            )
        )
    first = (await _verify(db, signer)).first()
    assert first is not None and "earlier chain" in first.message


async def test_a_failed_write_that_committed_is_not_chained_twice(db: Any, signer: Signer) -> None:
    """The commit happened but its answer was lost: the retry reads the head back and skips
    the rows already there, so positions stay contiguous."""
    ledger = Ledger(db, signer, interval_seconds=3600)
    await ledger.open()
    async with db() as session, session.begin():
        head = await ledger.insert(session, [record(1), record(2)])
    ledger.unsure()  # as if the commit's answer had been lost
    del head
    async with db() as session, session.begin():
        ledger.advance(await ledger.insert(session, [record(1), record(2), record(3)]))
    await ledger.tick(final=True)
    report = await _verify(db, signer)
    assert report.ok and report.rows == 3, report.problems


def test_a_checkpoint_signed_by_another_key_is_refused(signer: Signer) -> None:
    other = Signer.of(generate())
    envelope = signed.sign(other, "c", 1, "0" * 64, datetime.now(UTC))
    with pytest.raises(EnvelopeError):
        signed.read(envelope, {signer.kid: signer.public})
    assert signed.read(envelope, {other.kid: other.public}).seq == 1


async def test_the_key_is_sealed_once_and_trusted_only_when_it_opens(db: Any) -> None:
    settings = Settings(auth={"key_encryption_key": KEK})  # type: ignore[arg-type]
    none_yet = await attest_keys.load(settings, db, create=False)
    assert none_yet.signer is None
    made = await attest_keys.load(settings, db, create=True)
    again = await attest_keys.load(settings, db, create=True)
    assert made.signer is not None and again.signer is not None
    assert made.signer.kid == again.signer.kid
    other = Settings(auth={"key_encryption_key": base64.b64encode(os.urandom(32)).decode()})  # type: ignore[arg-type]
    stranger = await attest_keys.load(other, db, create=False)
    assert stranger.signer is None and not stranger.verifying


async def test_the_writer_without_a_ledger_is_unchanged() -> None:
    flaky = FlakyDatabase(failures=0)
    writer = AuditWriter(flaky, AuditSettings(flush_interval_seconds=0.01))  # type: ignore[arg-type]
    writer.start()
    writer.submit(record(1))
    await writer.close(timeout=5)
    assert [row["request_id"] for row in flaky.rows] == ["r1"]
