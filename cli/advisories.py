"""``gatekeeper advisories import PATH``: load OSV records into the advisory store.

PATH is an OSV JSON file, a directory of them, or one of the per-ecosystem zip archives OSV
publishes. Re-importing is safe (unchanged records are skipped). Records are streamed into the
store (``services/advisory_import.py``) under the ``[advisories]`` caps; a malformed or oversized
record is skipped with a line naming it on stderr, and the rest are imported. A source that
cannot be read as a whole (not a zip, over ``max_uncompressed_bytes``, no valid record) imports
nothing and exits 1.

Images whose inventory holds an affected package are then re-evaluated at once from stored data
(``services/reevaluate.py``: no layer is read, the upstream is not asked), under the configured
policies; images with nothing stored to decide from are queued for a full verification, which
the serving gatekeeper runs. Verdict changes go to the access log and to the configured webhooks
(the serving gatekeeper sends the deliveries this command records).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from cli.config import add_config, settings_for
from config.settings import Settings
from config.text import visible


def cmd_import(args: argparse.Namespace) -> int:
    from verifiers.vulns.load import LoadError

    settings = settings_for(args)
    path = Path(args.path)
    if not path.exists():
        raise LookupError(f"{path}: no such file or directory")
    try:
        imported, report = asyncio.run(_import(settings, path))
    except LoadError as exc:
        print(f"gatekeeper: cannot import {path}: {exc}; nothing imported", file=sys.stderr)
        return 1
    result = imported.result
    if not result.new_version:
        print(
            f"nothing new: advisory data version {result.data_version} stays in force "
            f"({result.unchanged} unchanged, {imported.rejected} rejected)"
        )
        return 0
    print(
        f"advisory data version {result.data_version}: {result.added} added, "
        f"{result.updated} updated, {result.unchanged} unchanged, {imported.rejected} rejected; "
        f"{report.examined} images re-evaluated in {report.seconds:.2f}s ({report.quarantined} "
        f"newly quarantined, {report.notified} notified); "
        f"{len(report.needs_verification)} images queued for re-verification"
    )
    return 0


def _skipped(reject: Any) -> None:
    """Each skipped record as soon as it is met: the import goes on past it."""
    print(f"skipped {visible(reject.where)}: {visible(reject.reason)}", file=sys.stderr, flush=True)


async def _import(settings: Settings, path: Path) -> tuple[Any, Any]:
    from proxy.attest.publisher import recorder_for
    from proxy.audit import AuditWriter, audit_listener
    from proxy.audit_ledger import open_ledger
    from proxy.webhooks import WebhookDispatcher, make_webhook_client
    from proxy.webhooks.cloudevents import event_source
    from services.advisory_import import import_path, read_limits
    from services.events import EventBus
    from services.policybook import PolicyBook
    from services.rescan import reevaluate_import
    from storage.db import create_engine, sessionmaker, upgrade

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        db = sessionmaker(engine)
        limits = read_limits(settings.advisories)
        imported = await import_path(db, path, limits, source=str(path), on_reject=_skipped)
        result = imported.result
        # Only the listeners' recording halves run here: deliveries become rows that the
        # serving gatekeeper's dispatcher sends, audit rows are written before we exit.
        writer = AuditWriter(db, settings.audit, ledger=await open_ledger(settings, db))
        writer.start()
        client = make_webhook_client()
        hooks = WebhookDispatcher(settings.webhooks, db, client, source=event_source(settings))
        bus = EventBus()
        bus.subscribe(audit_listener(writer, json_log=settings.audit.json_log))
        bus.subscribe(hooks.listener)
        # FAILED summaries of images this import quarantines (the server pushes them).
        recorder = await recorder_for(settings, db, PolicyBook(settings.policies).match)
        if recorder is not None:
            bus.subscribe(recorder.listener)
        try:
            report = await reevaluate_import(
                db, result, policies=settings.policies, publish=bus.publish
            )
        finally:
            await hooks.close()
            await client.aclose()
            await writer.close()
        return imported, report
    finally:
        await engine.dispose()


def add_advisories_command(sub: Any) -> Any:
    """Add ``gatekeeper advisories``; returns its subcommands (``advisories sync`` is added
    to them from ``cli/rescan.py``)."""
    advisories = sub.add_parser("advisories", help="the offline OSV advisory store")
    commands = advisories.add_subparsers(dest="advisories_command", required=True)
    imp = commands.add_parser(
        "import", help="import OSV records (file, directory or zip) and re-evaluate images"
    )
    imp.add_argument("path")
    add_config(imp)
    imp.set_defaults(func=cmd_import)
    return commands
