"""The access log's write path: rows per second from ``AuditWriter.submit`` to committed rows.

Issue 18's goal: chaining every row (a hash over its content and the previous row's hash,
under one writer lock) keeps the write path within 10% of its throughput before the chain. This
bench measures exactly that path, as ``gatekeeper serve`` runs it: each row appended to the
spool, batched (``audit.batch_size``), inserted once per request id, the spool segment released
once committed. It does not start an HTTP server: the request path's share of the cost is
``proxy_bench``'s business.

Each run writes ``--rows`` rows through a fresh writer into a database that already holds
``--preload`` rows (so the look-ups of the chain's head and of request ids already there meet
a table of some size), and reports rows/s; the median of ``--repeat`` runs is the figure. Two
writers alternate in one run, on one database: the baseline writes rows unchained (the write
path before issue 18, ``AuditWriter`` without a ledger), the other chains and checkpoints them
as ``gatekeeper serve`` does (a checkpoint every second, so several land in each run). The
figure is ``ratio`` = chained / baseline; the goal is at least 0.9.

Usage: ``python -m bench.audit_bench [--database sqlite|postgres] [--rows 50000]``
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.settings import AuditSettings
from proxy.attest.dsse import Signer
from proxy.audit import AuditWriter
from proxy.audit_ledger import Ledger
from proxy.audit_spool import Spool
from proxy.auth.keyring import generate
from storage.audit import AccessRecord
from storage.db import create_engine, sessionmaker, upgrade
from tests.support import postgres

ROOT = Path(__file__).resolve().parent.parent


def _row(n: int) -> AccessRecord:
    """A row as a blob pull writes it (every column filled, a realistic width)."""
    return AccessRecord(
        time=datetime.now(UTC),
        request_id=uuid.uuid4().hex,
        client_addr="10.1.2.3",
        identity="ci-deploy",
        method="GET",
        path=f"/v2/team/app{n % 50}/blobs/sha256:{n:064x}",
        action="blob.pull",
        repository=f"team/app{n % 50}",
        reference=None,
        digest=f"sha256:{n:064x}",
        status=200,
        bytes_in=0,
        bytes_out=1_048_576 + n,
        duration_ms=round(1.5 + (n % 97) / 7, 3),
        upstream_status=200,
        decision="allow",
        reason="passed under policy default",
        error_code=None,
    )


async def _write(
    db: Any, rows: int, settings: AuditSettings, spool_dir: Path, *, chained: bool
) -> float:
    """Seconds from the first submit to the last row committed (and, chained, the stop's
    checkpoint signed)."""
    spool = Spool(spool_dir / uuid.uuid4().hex[:8], settings.spool_sync_seconds)
    spool.open()
    ledger = None
    if chained:
        ledger = Ledger(db, Signer.of(generate()), interval_seconds=1.0)
        await ledger.open()
    writer = AuditWriter(db, settings, None, spool, ledger)
    records = [_row(n) for n in range(rows)]
    writer.start()
    started = time.perf_counter()
    for index, record in enumerate(records):
        writer.submit(replace(record, time=datetime.now(UTC)))
        if index % 1000 == 999:
            await asyncio.sleep(0)  # requests arrive over time; the writer runs meanwhile
    await writer.close(timeout=600)
    elapsed = time.perf_counter() - started
    assert writer.written == rows, (writer.written, rows)
    return elapsed


@dataclass(frozen=True)
class AuditOptions:
    """One run's parameters (``bench.cli`` reads them from the command line)."""

    database: str
    rows: int
    preload: int
    batch_size: int
    repeat: int
    label: str
    results_dir: Path


async def run(url: str, args: AuditOptions, workdir: Path) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        db = sessionmaker(engine)
        settings = AuditSettings(
            flush_interval_seconds=0.5, batch_size=args.batch_size, spool_dir=workdir / "spool"
        )
        if args.preload:
            await _write(db, args.preload, settings, workdir / "spool", chained=True)
        rates: dict[str, list[float]] = {"baseline": [], "chained": []}
        for n in range(args.repeat):
            # Alternate which goes first, so a machine getting busier favours neither.
            order = ("baseline", "chained") if n % 2 == 0 else ("chained", "baseline")
            for name in order:
                spool = workdir / "spool"
                elapsed = await _write(db, args.rows, settings, spool, chained=name == "chained")
                rates[name].append(args.rows / elapsed)
        baseline = statistics.median(rates["baseline"])
        chained = statistics.median(rates["chained"])
        return {
            "database": args.database,
            "rows": args.rows,
            "preload": args.preload,
            "batch_size": args.batch_size,
            "baseline_rates": [round(r) for r in rates["baseline"]],
            "chained_rates": [round(r) for r in rates["chained"]],
            "baseline_rows_per_second": round(baseline),
            "chained_rows_per_second": round(chained),
            "ratio": round(chained / baseline, 3),
            "goal": 0.9,
        }
    finally:
        await engine.dispose()


def main(args: AuditOptions) -> int:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="audit-bench-")))
        if args.database == "postgres":
            url = postgres.cluster_url(stack, workdir / "pg")
        else:
            url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        data = asyncio.run(run(url, args, workdir))
    data["label"] = args.label
    print(json.dumps(data))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.results_dir / f"audit-{args.database}-{stamp}.json").write_text(json.dumps(data))
    return 0


if __name__ == "__main__":
    from bench.cli import audit_bench

    sys.exit(audit_bench())
