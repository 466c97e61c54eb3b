"""``gatekeeper advisories import PATH``: load OSV records into the advisory store.

PATH is an OSV JSON file, a directory of them, or one of the per-ecosystem zip archives OSV
publishes. Re-importing is safe (unchanged records are skipped). Images whose inventory holds
an affected package are queued for re-verification, which the serving gatekeeper runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from config.settings import load_settings


def cmd_import(args: argparse.Namespace) -> int:
    from proxy.rescan import queue_affected
    from storage.advisories import DbAdvisoryStore
    from storage.db import create_engine, sessionmaker, upgrade
    from verifiers.vulns.load import Rejected, read_path
    from verifiers.vulns.osv import Advisory

    settings = load_settings(Path(args.config) if args.config else None)
    path = Path(args.path)
    if not path.exists():
        raise LookupError(f"{path}: no such file or directory")
    records = list(read_path(path))
    advisories = [r for r in records if isinstance(r, Advisory)]
    rejected = [r for r in records if isinstance(r, Rejected)]

    async def run() -> tuple[Any, int]:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            db = sessionmaker(engine)
            result = await DbAdvisoryStore(db).import_advisories(advisories, str(path))
            return result, await queue_affected(db, result)
        finally:
            await engine.dispose()

    result, queued = asyncio.run(run())
    for r in rejected:
        print(f"skipped {r.where}: {r.reason}", file=sys.stderr)
    print(
        f"advisory data version {result.data_version}: {result.added} added, "
        f"{result.updated} updated, {result.unchanged} unchanged, {len(rejected)} rejected; "
        f"{queued} images queued for re-verification"
    )
    return 0


def add_advisories_command(sub: Any) -> None:
    advisories = sub.add_parser("advisories", help="the offline OSV advisory store")
    commands = advisories.add_subparsers(dest="advisories_command", required=True)
    imp = commands.add_parser("import", help="import OSV records (file, directory or zip)")
    imp.add_argument("path")
    imp.add_argument("--config")
    imp.set_defaults(func=cmd_import)
