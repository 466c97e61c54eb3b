"""Reading one OSV source into the advisory store: what ``gatekeeper advisories import`` and
the mirror sync share.

The records are read and parsed in a worker thread, one batch at a time, and each batch is
stored before the next is read: the event loop of a serving gatekeeper stays free while a large
archive is imported, and memory holds one batch (at most ``BATCH_RECORDS`` records or about
``BATCH_BYTES`` of JSON, plus one record of up to ``max_record_bytes``), not the archive. The
import is still one transaction: a source that fails half-way (over ``max_uncompressed_bytes``,
a database error) leaves the data as it was.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import async_sessionmaker

from config.scheduling import AdvisoriesSettings
from storage.advisories import DbAdvisoryStore, ImportResult
from verifiers.vulns.load import Loaded, LoadError, ReadLimits, Rejected, read_records
from verifiers.vulns.osv import Advisory

BATCH_RECORDS = 500
BATCH_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Imported:
    """One source imported."""

    result: ImportResult
    rejected: int
    """Records skipped as malformed or oversized (each one handed to ``on_reject``)."""


def read_limits(settings: AdvisoriesSettings) -> ReadLimits:
    return ReadLimits(
        max_record_bytes=settings.max_record_bytes,
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
    )


async def import_path(
    db: async_sessionmaker[Any],
    path: Path,
    limits: ReadLimits,
    *,
    source: str,
    on_reject: Callable[[Rejected], None],
) -> Imported:
    """Import every valid record under ``path``; raises :class:`LoadError` when the source
    cannot be read as a whole or holds no valid record (nothing is imported then)."""
    records = read_records(path, limits)
    counts = {"loaded": 0, "rejected": 0}

    async def batches() -> AsyncIterator[Sequence[Advisory]]:
        while True:
            loaded, rejected = await asyncio.to_thread(_next_batch, records)
            for reject in rejected:
                on_reject(reject)
            counts["loaded"] += len(loaded)
            counts["rejected"] += len(rejected)
            if not loaded and not rejected:
                break
            yield loaded
        if not counts["loaded"]:  # raised inside the import's transaction: nothing stays
            raise LoadError(f"no valid OSV record in it ({counts['rejected']} rejected)")

    try:
        result = await DbAdvisoryStore(db).import_batches(batches(), source)
    finally:
        records.close()  # an import that failed half-way closes the archive now, not at GC
    return Imported(result, counts["rejected"])


def _next_batch(records: Iterator[Loaded | Rejected]) -> tuple[list[Advisory], list[Rejected]]:
    """The next records, up to ``BATCH_RECORDS`` of them or ``BATCH_BYTES`` of JSON."""
    loaded: list[Advisory] = []
    rejected: list[Rejected] = []
    size = 0
    for record in records:
        if isinstance(record, Rejected):
            rejected.append(record)
        else:
            loaded.append(record.advisory)
            size += record.size
        if len(loaded) + len(rejected) >= BATCH_RECORDS or size >= BATCH_BYTES:
            break
    return loaded, rejected
