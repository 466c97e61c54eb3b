"""``gatekeeper advisories import PATH``: load OSV records into the advisory store.

PATH is an OSV JSON file, a directory of them, or one of the per-ecosystem zip archives OSV
publishes. Re-importing is safe (unchanged records are skipped). Images whose inventory holds
an affected package are then re-evaluated at once from stored data (``proxy/reevaluate.py``: no
layer is read, the upstream is not asked), under the configured policies; images with nothing
stored to decide from are queued for a full verification, which the serving gatekeeper runs.
Verdict changes go to the access log and to the configured webhooks (the serving gatekeeper
sends the deliveries this command records).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from config.settings import Settings, load_settings
from config.text import visible


def cmd_import(args: argparse.Namespace) -> int:
    from verifiers.vulns.load import Rejected, read_path
    from verifiers.vulns.osv import Advisory

    settings = load_settings(Path(args.config) if args.config else None)
    path = Path(args.path)
    if not path.exists():
        raise LookupError(f"{path}: no such file or directory")
    records = list(read_path(path))
    advisories = [r for r in records if isinstance(r, Advisory)]
    rejected = [r for r in records if isinstance(r, Rejected)]
    result, report = asyncio.run(_import(settings, advisories, str(path)))
    for r in rejected:
        print(f"skipped {visible(r.where)}: {visible(r.reason)}", file=sys.stderr)
    print(
        f"advisory data version {result.data_version}: {result.added} added, "
        f"{result.updated} updated, {result.unchanged} unchanged, {len(rejected)} rejected; "
        f"{report.examined} images re-evaluated in {report.seconds:.2f}s ({report.quarantined} "
        f"newly quarantined, {report.notified} notified); "
        f"{len(report.needs_verification)} images queued for re-verification"
    )
    return 0


async def _import(settings: Settings, advisories: list[Any], source: str) -> tuple[Any, Any]:
    from proxy.audit import AuditWriter, audit_listener
    from proxy.events import EventBus
    from proxy.rescan import reevaluate_import
    from proxy.webhooks import WebhookDispatcher, make_webhook_client
    from proxy.webhooks.cloudevents import event_source
    from storage.advisories import DbAdvisoryStore
    from storage.db import create_engine, sessionmaker, upgrade

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        db = sessionmaker(engine)
        result = await DbAdvisoryStore(db).import_advisories(advisories, source)
        # Only the listeners' recording halves run here: deliveries become rows that the
        # serving gatekeeper's dispatcher sends, audit rows are written before we exit.
        writer = AuditWriter(db, settings.audit)
        writer.start()
        client = make_webhook_client()
        hooks = WebhookDispatcher(settings.webhooks, db, client, source=event_source(settings))
        bus = EventBus()
        bus.subscribe(audit_listener(writer))
        bus.subscribe(hooks.listener)
        try:
            report = await reevaluate_import(
                db, result, policies=settings.policies, publish=bus.publish
            )
        finally:
            await hooks.close()
            await client.aclose()
            await writer.close()
        return result, report
    finally:
        await engine.dispose()


def add_advisories_command(sub: Any) -> Any:
    """Add ``gatekeeper advisories``; returns its subcommands (``advisories sync`` is added
    to them from ``proxy/cli_rescan.py``)."""
    advisories = sub.add_parser("advisories", help="the offline OSV advisory store")
    commands = advisories.add_subparsers(dest="advisories_command", required=True)
    imp = commands.add_parser(
        "import", help="import OSV records (file, directory or zip) and re-evaluate images"
    )
    imp.add_argument("path")
    imp.add_argument("--config")
    imp.set_defaults(func=cmd_import)
    return commands
