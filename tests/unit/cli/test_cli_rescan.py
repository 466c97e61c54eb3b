"""``gatekeeper rescan`` and ``gatekeeper advisories sync`` in-process on a real database:
start, status, cancel, refusal of a second run, and progress output with and without a
terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from cli.main import build_parser, main
from cli.rescan import BarProgress, PlainProgress, Snapshot, _rescan, wait_for
from config.settings import Settings, load_settings
from services.scheduler import Scheduler
from storage import verdicts
from storage.db import create_engine, sessionmaker, upgrade
from storage.models import Job
from storage.timeutil import now
from tests.support.database import Database


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class AlwaysHeld:
    def hold(self) -> Any:
        import contextlib

        @contextlib.asynccontextmanager
        async def held() -> AsyncIterator[bool]:
            yield True

        return held()


@pytest.fixture
async def setup(fresh_db: Database) -> AsyncIterator[tuple[Settings, Any]]:
    engine = create_engine(fresh_db.url)
    await upgrade(engine)
    db = sessionmaker(engine)
    async with db() as session, session.begin():
        for n in range(3):
            await verdicts.ensure_pending(session, "cli/app", f"sha256:{n:064x}", "t", "pushed")
    settings = load_settings(
        env={"GATEKEEPER_DATABASE_URL": fresh_db.url, "GATEKEEPER_RESCAN__INTERVAL": "off"}
    )
    yield settings, db
    await engine.dispose()


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["rescan", *argv])


async def run(settings: Settings, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await _rescan(settings, args(*argv), out)
    return status, out.getvalue()


async def test_start_status_refuse_and_cancel(
    setup: tuple[Settings, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, _ = setup
    status, out = await run(settings, "--status")
    assert (status, out) == (0, "no re-verification run yet\n")
    status, out = await run(settings, "-r", "cli/*", "--actor", "ops")
    assert status == 0 and out == "started re-verification run 1: 3 images of cli/*\n"
    status, _ = await run(settings)
    assert status == 2 and "run 1 is still running" in capsys.readouterr().err
    status, out = await run(settings, "--status", "--json")
    shown = json.loads(out)
    assert (shown["state"], shown["total"], shown["requested_by"]) == ("running", 3, "cli:ops")
    status, out = await run(settings, "--cancel")
    assert status == 0 and out.startswith("cancelled run 1 (0/3 queued); 0 queued")
    status, out = await run(settings, "--status")
    assert "(manual, cancelled)" in out


async def test_wait_follows_the_run_to_its_end(setup: tuple[Settings, Any]) -> None:
    settings, db = setup
    _, out = await run(settings, "--json")
    run_id = json.loads(out)["id"]
    scheduler = Scheduler(settings, db, AlwaysHeld())

    async def serve() -> None:
        """What the serving gatekeeper does: queue the run, then verify its jobs."""
        while True:
            await asyncio.sleep(0.05)
            await scheduler.advance(now())
            async with db() as session, session.begin():
                await session.execute(
                    update(Job).execution_options(synchronize_session=False).values(state="done")
                )

    worker = asyncio.create_task(serve())
    plain = io.StringIO()
    try:
        final = await wait_for(db, run_id, PlainProgress(plain), poll=0.02)
    finally:
        # Cancelled mid-transaction, it must finish unwinding (its connection given back)
        # before the fixture disposes of the engine: a connection closed by both at once
        # left a close no thread would ever answer, and the test loop's teardown hung.
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    assert final.finished and final.run.state == "done" and final.verified == 3
    lines = plain.getvalue().splitlines()
    assert len(lines) == len(set(lines))  # one line per change, no repeats
    assert lines[-1] == "run 1 (manual, done): queued 3/3 images, 3/3 verifications finished"


def test_progress_bar_on_a_terminal_and_lines_elsewhere() -> None:
    from datetime import UTC, datetime

    from storage.schedules import RunView

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    snap = Snapshot(
        RunView(7, "schedule", "s", None, "running", 10, 4, 0, moment, moment, None, None, None),
        {"done": 2, "queued": 1, "dead": 1},
    )
    terminal = Terminal()
    bar = BarProgress(terminal)
    bar.update(snap)
    bar.close()
    assert "run 7 queued" in terminal.getvalue() and "4/10" in terminal.getvalue()
    assert snap.line() == (
        "run 7 (schedule, running): queued 4/10 images, 3/4 verifications finished, 1 dead-lettered"
    )
    assert not snap.finished


def test_sync_without_a_mirror_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    config = tmp_path / "gk.toml"
    config.write_text(f'database_url = "sqlite+aiosqlite:///{tmp_path}/gk.db"\n')
    assert main(["advisories", "sync", "--config", str(config)]) == 2
    assert "no advisory mirror configured" in capsys.readouterr().err
