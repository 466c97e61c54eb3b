"""``gatekeeper rescan``: start, watch and cancel a full re-verification run; and
``gatekeeper advisories sync``: one advisory mirror sync now.

Like ``gatekeeper enroll`` and ``advisories import`` these work on the database named in the
settings, not over HTTP: a run is a row any replica's scheduler carries out (spread, resumable,
once cluster-wide), so the command works whichever replica is up, and ``--wait`` follows the
run to its end. ``gatekeeper quarantine rescan`` is the admin-API counterpart for one image.

``--wait`` draws a progress bar on a terminal (rich) and prints one plain line per change
otherwise (CI logs). Exit status: 0 done, 1 the run was cancelled or a sync failed, 2 bad usage
or another run is still running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from sqlalchemy.ext.asyncio import async_sessionmaker

from cli.config import add_config, settings_for
from cli.users import UsageError
from config.scheduling import seconds
from config.settings import Settings
from config.text import check_plain, visible
from storage.schedules import RunView

DESCRIPTION = (
    "Start a full re-verification run (every stored image, or those of --repository), show "
    "it (--status) or cancel it (--cancel). A serving gatekeeper carries the run out: spread "
    "over --spread, once cluster-wide, resumed after restarts. Works on the database of the "
    "settings (--config / GATEKEEPER_DATABASE_URL). For one image now, over the admin API: "
    "gatekeeper quarantine rescan REPO@DIGEST. Exit status: 0 done, 1 cancelled, 2 bad usage "
    "or another run is still running."
)
FINISHED_JOBS = ("done", "dead", "cancelled")
IDLE_HINT_SECONDS = 30.0


@dataclass(frozen=True)
class Snapshot:
    """A run and the states of the jobs it queued, read together."""

    run: RunView
    jobs: dict[str, int] = field(default_factory=dict)

    @property
    def verified(self) -> int:
        return sum(self.jobs.get(s, 0) for s in FINISHED_JOBS)

    @property
    def job_total(self) -> int:
        return sum(self.jobs.values())

    @property
    def finished(self) -> bool:
        """Queued completely (or cancelled) and none of its jobs left to run."""
        waiting = self.jobs.get("queued", 0) + self.jobs.get("running", 0)
        return self.run.state != "running" and (self.run.state == "cancelled" or waiting == 0)

    def line(self) -> str:
        run = self.run
        scope = f" of {run.pattern}" if run.pattern else ""
        failed = self.jobs.get("dead", 0)
        return (
            f"run {run.id}{scope} ({run.trigger}, {run.state}): queued {run.queued}/{run.total} "
            f"images, {self.verified}/{self.job_total} verifications finished"
            + (f", {failed} dead-lettered" if failed else "")
        )

    def as_json(self) -> dict[str, Any]:
        run = self.run
        return {
            "id": run.id,
            "trigger": run.trigger,
            "requested_by": run.requested_by,
            "pattern": run.pattern,
            "state": run.state,
            "total": run.total,
            "queued": run.queued,
            "spread_seconds": run.spread_seconds,
            "created_at": run.created_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "note": run.note,
            "jobs": dict(sorted(self.jobs.items())),
        }


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[async_sessionmaker[Any]]:
    from storage.db import create_engine, sessionmaker, upgrade

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


async def snapshot(db: async_sessionmaker[Any], run_id: int | None = None) -> Snapshot | None:
    """The given run, else the running one, else the latest; None before the first run."""
    from storage import schedules

    async with db() as session:
        if run_id is not None:
            run = await schedules.get_run(session, run_id)
        else:
            run = await schedules.active_run(session) or await schedules.latest_run(session)
        if run is None:
            return None
        return Snapshot(run, await schedules.job_states(session, run.id))


# -- progress ----------------------------------------------------------------------------------


class PlainProgress:
    """One line per change: for logs, pipes and CI."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last = ""

    def update(self, snap: Snapshot) -> None:
        line = snap.line()
        if line != self._last:
            print(visible(line), file=self._out, flush=True)
            self._last = line

    def note(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def close(self) -> None:
        pass


class BarProgress:
    """Two bars on a terminal: images queued by the run, and their verifications finished."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=out),
        )
        self._queued = self._progress.add_task("queued", total=None)
        self._verified = self._progress.add_task("verified", total=None)
        self._progress.start()

    def update(self, snap: Snapshot) -> None:
        run = snap.run
        self._progress.update(
            self._queued,
            description=f"run {run.id} queued",
            completed=run.queued,
            total=max(run.total, run.queued),
        )
        self._progress.update(self._verified, completed=snap.verified, total=max(snap.job_total, 1))

    def note(self, text: str) -> None:
        self._progress.console.print(text)

    def close(self) -> None:
        self._progress.stop()


def make_progress(out: TextIO) -> PlainProgress | BarProgress:
    return BarProgress(out) if out.isatty() else PlainProgress(out)


async def wait_for(
    db: async_sessionmaker[Any],
    run_id: int,
    progress: PlainProgress | BarProgress,
    *,
    poll: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> Snapshot:
    """Follow a run until it is finished; says once if nothing moves for a while (runs are
    carried out by a serving gatekeeper, not by this command)."""
    last_change, last_key, hinted = clock(), None, False
    while True:
        snap = await snapshot(db, run_id)
        assert snap is not None
        progress.update(snap)
        if snap.finished:
            return snap
        key = (snap.run.queued, tuple(sorted(snap.jobs.items())))
        if key != last_key:
            last_change, last_key = clock(), key
        elif not hinted and clock() - last_change > IDLE_HINT_SECONDS:
            progress.note(
                "no progress for a while: runs are carried out by a serving gatekeeper "
                "(is one running on this database, with verification workers?)"
            )
            hinted = True
        await asyncio.sleep(poll)


# -- commands ----------------------------------------------------------------------------------


def _spread(text: str) -> float:
    try:
        value = float(seconds(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if value < 0:
        raise argparse.ArgumentTypeError("the spread cannot be negative")
    return value


def cmd_rescan(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    if (args.status or args.cancel) and (args.repository or args.spread is not None):
        raise UsageError("--repository and --spread only apply when starting a run")
    if args.actor is not None:
        try:
            check_plain(args.actor)
        except ValueError as exc:
            raise UsageError(f"--actor {exc}") from exc
    return asyncio.run(_rescan(settings, args, sys.stdout))


async def _rescan(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    who = f"cli:{args.actor or getpass.getuser()}"
    async with _database(settings) as db:
        if args.cancel:
            return await _cancel(db, args, out, who)
        if args.status:
            snap = await snapshot(db)
            if snap is None:
                print("no re-verification run yet", file=out)
                return 0
            _emit(args, out, snap, visible(snap.line()))
            if not args.wait or snap.finished:
                return 0
            return await _follow(db, args, out, snap.run.id)
        return await _start(db, args, out, who)


async def _cancel(
    db: async_sessionmaker[Any], args: argparse.Namespace, out: TextIO, who: str
) -> int:
    from storage import schedules
    from storage.timeutil import now

    async with db() as session, session.begin():
        active = await schedules.active_run(session)
        done = (
            None if active is None else await schedules.cancel_run(session, active.id, who, now())
        )
    if done is None:
        print("no re-verification run is running", file=out)
        return 0
    run, withdrawn = done
    text = (
        f"cancelled run {run.id} ({run.queued}/{run.total} queued); {withdrawn} queued "
        "verifications withdrawn, verdicts unchanged"
    )
    _emit(args, out, Snapshot(run), text)
    return 0


async def _start(
    db: async_sessionmaker[Any], args: argparse.Namespace, out: TextIO, who: str
) -> int:
    from services.scheduler import start_manual_run
    from storage.schedules import RunActive

    spread = args.spread if args.spread is not None else 0.0
    try:
        run = await start_manual_run(
            db, pattern=args.repository, requested_by=who, spread_seconds=spread
        )
    except RunActive as exc:
        print(f"gatekeeper: {visible(exc)}", file=sys.stderr)
        return 2
    scope = f" of {visible(run.pattern)}" if run.pattern else ""
    _emit(
        args, out, Snapshot(run), f"started re-verification run {run.id}: {run.total} images{scope}"
    )
    return await _follow(db, args, out, run.id) if args.wait else 0


async def _follow(
    db: async_sessionmaker[Any], args: argparse.Namespace, out: TextIO, run_id: int
) -> int:
    """``--wait``: progress until the run is finished (on stderr with ``--json``, so stdout
    stays one JSON document per line)."""
    progress = PlainProgress(sys.stderr) if args.json else make_progress(out)
    try:
        final = await wait_for(db, run_id, progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(final.as_json(), sort_keys=True), file=out)
    return 1 if final.run.state == "cancelled" else 0


def _emit(args: argparse.Namespace, out: TextIO, snap: Snapshot, text: str) -> None:
    if args.json:
        print(json.dumps(snap.as_json(), sort_keys=True), file=out)
    else:
        print(text, file=out)


def cmd_sync(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    if not settings.advisories.urls:
        raise UsageError("no advisory mirror configured: set [advisories] mirror_url")
    results = asyncio.run(_sync(settings, args.force, args.lock_timeout))
    for r in results:
        url = visible(r.url)
        if r.status == "imported":
            print(
                f"{url}: data version {r.data_version}: {r.added} added, {r.updated} updated, "
                f"{r.unchanged} unchanged, {r.rejected} rejected; {r.queued} images queued"
            )
        elif r.status == "not-modified":
            print(f"{url}: unchanged since the last sync (304), nothing downloaded")
        else:
            print(f"{url}: sync failed, old data kept: {visible(r.error)}")
    return 1 if any(r.status == "failed" for r in results) else 0


async def _sync(settings: Settings, force: bool, lock_timeout: float) -> list[Any]:
    """Take the sync's cluster-wide lock (so no replica syncs at the same time), then sync
    every configured URL once."""
    from services.mirror import SYNC_LOCK, MirrorSync, make_mirror_client
    from storage.db import create_engine, sessionmaker, upgrade
    from storage.locks import cluster_lock

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        db = sessionmaker(engine)
        owner = f"cli-{getpass.getuser()}-{os.getpid()}"
        lock = cluster_lock(engine, db, owner, settings.rescan.lease_seconds, name=SYNC_LOCK)
        deadline = time.monotonic() + lock_timeout
        async with make_mirror_client(settings.advisories) as client:
            while True:
                async with lock.hold() as held:
                    if held:
                        return await MirrorSync(settings.advisories, db, client).sync_all(
                            force=force
                        )
                if time.monotonic() >= deadline:
                    raise UsageError(
                        "another gatekeeper is syncing the advisory mirror; "
                        "try again later or raise --lock-timeout"
                    )
                await asyncio.sleep(1.0)
    finally:
        await engine.dispose()


# -- wiring ------------------------------------------------------------------------------------


def add_rescan_command(sub: Any) -> None:
    """Add ``gatekeeper rescan``."""
    p = sub.add_parser(
        "rescan",
        help="re-verify every stored image (spread, resumable, once cluster-wide)",
        description=DESCRIPTION,
    )
    add_config(p)
    action = p.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true", help="show the current or last run")
    action.add_argument("--cancel", action="store_true", help="cancel the running run")
    p.add_argument(
        "--repository", "-r", metavar="PATTERN", help="only repositories matching (* and ?)"
    )
    p.add_argument(
        "--spread",
        type=_spread,
        help="queue the images evenly over this long (e.g. 30m; default: as fast as the "
        "job queue takes them)",
    )
    p.add_argument("--wait", action="store_true", help="follow the run until it is finished")
    p.add_argument("--actor", help="who you are (recorded as cli:ACTOR; default: your login)")
    p.add_argument("--json", action="store_true", help="JSON output for scripts")
    p.set_defaults(func=cmd_rescan)


def add_sync_command(advisories: Any) -> None:
    """Add ``sync`` to the ``gatekeeper advisories`` subcommands."""
    p = advisories.add_parser("sync", help="download changed OSV archives from the mirror now")
    add_config(p)
    p.add_argument(
        "--force", action="store_true", help="download even if the mirror says unchanged"
    )
    p.add_argument(
        "--lock-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for a replica that is syncing (default 60)",
    )
    p.set_defaults(func=cmd_sync)
