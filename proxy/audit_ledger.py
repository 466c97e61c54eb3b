"""This process's chain of the access log: what the writer inserts rows through, and the
checkpoints it signs.

One chain per access-log writer (per gatekeeper process, so per replica run): rows come from
one task in order, so the chain's head lives here and no lock between replicas is needed, on
SQLite or PostgreSQL alike. The chain opens with a checkpoint at position 0 whose hash anchors
it to the newest signed checkpoint of any chain (``storage/audit_hashing.py``). A checkpoint is
signed every ``audit.checkpoint_interval_seconds`` when rows were added, and when the writer
stops. Without a signing key the rows are still chained but nothing is signed, and
``gatekeeper audit verify`` says so.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import Settings
from proxy.attest import checkpoints
from proxy.attest import keys as attest_keys
from proxy.attest.dsse import Signer
from storage import audit_chain
from storage.audit import AccessRecord
from storage.audit_chain import Head
from storage.audit_hashing import GENESIS, payload_hash
from storage.timeutil import now

log = logging.getLogger("gatekeeper.audit")


class Ledger:
    """The chain's head, kept in step with what is committed."""

    def __init__(
        self, db: async_sessionmaker[Any], signer: Signer | None, interval_seconds: float
    ) -> None:
        self._db = db
        self._signer = signer
        self._interval = interval_seconds
        self.chain = uuid.uuid4().hex[:20]
        self._head: Head | None = None
        self._stale = True
        """The head in memory may be behind the database (a write failed after its commit)."""
        self._signed_seq = 0
        self._signed_at = time.monotonic()

    async def open(self) -> None:
        """Open the chain: its position 0, anchored to the newest signed checkpoint."""
        async with self._db() as session, session.begin():
            newest = await audit_chain.newest_checkpoint(session)
            anchor = GENESIS
            if newest is not None and newest.envelope is not None:
                anchor = _payload_hash(newest.envelope)
            opening = Head(self.chain, 0, anchor)
            await self._checkpoint(session, opening)
        self._head, self._stale = opening, False
        if self._signer is None:
            log.warning(
                "access log: no gatekeeper signing key (set a key-encryption key or "
                "attestations.signing_key_file): rows are chained but no checkpoint is signed"
            )

    async def insert(
        self, session: AsyncSession, records: Sequence[AccessRecord], *, replay: bool = False
    ) -> Head:
        """Insert ``records`` as the chain's next rows in ``session``'s transaction; the head
        they make, for :meth:`advance` once committed."""
        at = self._head
        if self._stale or at is None:
            at = await audit_chain.head(session, self.chain)
            if at is None:
                raise RuntimeError("the access-log chain was not opened")
        return await audit_chain.insert_chained(
            session, at, records, skip_present=replay or self._stale
        )

    def chained(self, records: Sequence[AccessRecord]) -> audit_chain.Chained | None:
        """``records`` as the chain's next rows, computed now, outside the write transaction,
        when the head in memory is sure (else None: :meth:`insert` reads it in the
        transaction). Only this writer extends the chain, so the head cannot move meanwhile;
        a failed write makes it unsure, and the retry goes through :meth:`insert`."""
        if self._stale or self._head is None:
            return None
        return audit_chain.chain(self._head, records)

    def advance(self, head: Head) -> None:
        self._head, self._stale = head, False

    def unsure(self) -> None:
        """A write failed: it may have committed all the same, so read the head back."""
        self._stale = True

    async def tick(self, *, final: bool = False) -> None:
        """Sign a checkpoint of the head if rows were added and the interval passed (or the
        writer is stopping); a failure is logged and tried again at the next tick."""
        head = self._head
        if head is None or self._stale or head.seq <= self._signed_seq:
            return
        if not final and time.monotonic() - self._signed_at < self._interval:
            return
        try:
            async with self._db() as session, session.begin():
                await self._checkpoint(session, head)
        except Exception as exc:  # a checkpoint is retried; it must never stop the writer
            log.error("access log: checkpoint of position %d failed: %s", head.seq, exc)
            return
        self._signed_seq, self._signed_at = head.seq, time.monotonic()

    async def _checkpoint(self, session: AsyncSession, head: Head) -> None:
        moment = now()
        envelope = None
        if self._signer is not None:
            envelope = checkpoints.sign(self._signer, head.chain, head.seq, head.hash, moment)
        await audit_chain.add_checkpoint(session, head, moment, envelope)


def _payload_hash(envelope: str) -> str:
    """The anchor naming a stored checkpoint: the hash of its signed payload."""
    return payload_hash(base64.b64decode(json.loads(envelope)["payload"]))


async def open_ledger(settings: Settings, db: async_sessionmaker[Any]) -> Ledger:
    """A new chain for a command that writes access-log rows (verdict events) beside the
    serving gatekeeper: its rows must be chained like the server's, or ``audit verify`` would
    rightly call them insertions."""
    keys = await attest_keys.load(settings, db, create=True)
    ledger = Ledger(db, keys.signer, settings.audit.checkpoint_interval_seconds)
    await ledger.open()
    return ledger
