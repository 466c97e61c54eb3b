"""``gatekeeper``: serve, check a config, migrate the database, read the access log, and (over
the admin API) inspect and override verdicts."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

from cli.admin import add_admin_commands
from cli.advisories import add_advisories_command
from cli.audit_chain import add_audit_chain_commands
from cli.config import add_config, config_path, settings_for
from cli.doctor import add_doctor_command
from cli.login import add_login_commands
from cli.prefetch import add_prefetch_command
from cli.rescan import add_rescan_command, add_sync_command
from cli.sbom import add_sbom_command
from cli.serve import add_serve_commands, configure_logging
from cli.signatures import add_signature_commands
from cli.token_keys import add_token_key_command
from cli.users import UsageError
from cli.users import add_commands as add_user_commands
from cli.vex import add_vex_commands
from cli.vsa import add_vsa_commands
from cli.waivers import add_waiver_commands
from config.settings import ConfigError, Settings
from config.text import visible


def _settings(args: argparse.Namespace) -> Settings:
    return settings_for(args)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate the settings and print them (secrets masked), then warn about what is valid but
    does not do what it seems to (``verifiers/advice.py``): on stderr, exit 0, or 1 with
    ``--strict`` (for CI)."""
    from verifiers.advice import settings_advice

    if args.file:
        if args.config and args.config != args.file:
            raise UsageError("give the settings file once: FILE or --config FILE")
        args.config = args.file
    path = config_path(args)
    settings = settings_for(args)
    print(f"{path if path else '(no settings file: the defaults and the environment)'}: OK")
    for name, value in settings.model_dump(mode="json").items():
        if name in {"upstream_password"} and value is not None:
            value = "**********"
        print(f"  {name} = {json.dumps(value)}")
    advice = settings_advice(settings)
    for item in advice:
        print(f"warning: {visible(item.key)}: {visible(item.message)}", file=sys.stderr)
    return 1 if advice and args.strict else 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage.db import create_engine, current_revision, upgrade

    settings = _settings(args)

    async def run() -> str | None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    print(f"database at revision {asyncio.run(run())}")
    return 0


def _time(value: str) -> datetime:
    """An ISO 8601 time (without an offset: this machine's local time), in UTC."""
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc


def cmd_audit(args: argparse.Namespace) -> int:
    from storage.audit import AuditQuery, query_records
    from storage.db import create_engine, sessionmaker

    settings = _settings(args)
    query = AuditQuery(
        repository=args.repository,
        identity=args.identity,
        action=args.action,
        status=args.status,
        digest=args.digest,
        since=args.since,
        until=args.until,
        limit=args.limit,
    )

    async def run() -> list[dict[str, object]]:
        engine = create_engine(settings.database_url)
        try:
            async with sessionmaker(engine)() as session:
                return [r.as_json() for r in await query_records(session, query)]
        finally:
            await engine.dispose()

    rows = asyncio.run(run())
    if args.json:
        for row in rows:
            print(json.dumps(row, separators=(",", ":")))
    else:
        _print_table(rows)
    return 0


TABLE_COLUMNS = (
    "time",
    "identity",
    "method",
    "action",
    "repository",
    "digest",
    "status",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "reason",
)


def _print_table(rows: list[dict[str, object]]) -> None:
    cells = [[_cell(name, row.get(name)) for name in TABLE_COLUMNS] for row in rows]
    widths = [max([len(name), *(len(c[i]) for c in cells)]) for i, name in enumerate(TABLE_COLUMNS)]
    print("  ".join(name.upper().ljust(w) for name, w in zip(TABLE_COLUMNS, widths, strict=True)))
    for row_cells in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row_cells, widths, strict=True)).rstrip())


def _cell(name: str, value: object) -> str:
    """One cell, as a terminal may show it: paths, reasons and identities come from requests,
    so control and bidirectional characters are escaped (``config/text.py``)."""
    if value is None:
        return "-"
    text = visible(value)
    if name == "digest" and len(text) > 19:
        return text[:19]
    if name == "time":
        return text[:23]
    return text[:60]


def cmd_enroll(args: argparse.Namespace) -> int:
    from config.public_names import public_hosts
    from proxy.standalone import verification_service
    from services.enroll import enroll
    from storage.advisories import DbAdvisoryStore
    from storage.inventory import DbInventoryStore
    from storage.layer_cache import DbLayerCache
    from verifiers.registry import build_verifiers
    from verifiers.registry_names import RegistryNames

    settings = _settings(args)
    configure_logging(settings.log_level)

    def verifiers(db: Any) -> list[Any]:
        return build_verifiers(
            settings.verifiers,
            DbLayerCache(db),
            DbInventoryStore(db),
            DbAdvisoryStore(db),
            registry=RegistryNames.of(public_hosts(settings)),
        )

    async def run() -> tuple[str, int]:
        async with verification_service(settings, verifiers) as service:
            report = await enroll(service.upstream, service, args.repository)
            ran = await service.drain() if args.verify_now else 0
        return f"{report.repositories} repositories, {report.images} images queued", ran

    summary, ran = asyncio.run(run())
    print(summary + (f", {ran} verified" if args.verify_now else ""))
    return 0


def _add_audit_command(sub: Any) -> None:
    audit = sub.add_parser("audit", help="query the access log")
    add_config(audit)
    audit.add_argument("--repository", "-r")
    audit.add_argument("--identity", "-i")
    audit.add_argument("--action", "-a")
    audit.add_argument("--digest", "-d")
    audit.add_argument("--status", "-s", type=int)
    audit.add_argument("--since", type=_time, help="ISO 8601, inclusive")
    audit.add_argument("--until", type=_time, help="ISO 8601, exclusive")
    audit.add_argument("--limit", "-n", type=int, default=100)
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=cmd_audit)
    add_audit_chain_commands(audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatekeeper", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    add_serve_commands(sub)

    check = sub.add_parser(
        "check-config",
        help="validate settings; warn about what does not do what it seems to",
        description="Validate the settings (FILE, --config or $GATEKEEPER_CONFIG, plus the "
        "environment) and print them with secrets masked. Warnings on stderr: a policy that "
        "requires a verifier that cannot block anything under it, a signature rule whose key "
        "signers need a transparency log.",
    )
    check.add_argument("file", nargs="?", metavar="FILE", help="the settings file to check")
    add_config(check)
    check.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    check.set_defaults(func=cmd_check_config)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_up = db_sub.add_parser("upgrade", help="apply schema migrations")
    add_config(db_up)
    db_up.set_defaults(func=cmd_db_upgrade)

    _add_audit_command(sub)
    quarantine = add_admin_commands(sub)
    add_waiver_commands(quarantine)
    add_vex_commands(quarantine)
    add_login_commands(sub)
    add_doctor_command(sub)
    add_signature_commands(sub)
    add_sbom_command(sub)
    add_sync_command(add_advisories_command(sub))
    add_rescan_command(sub)
    add_token_key_command(sub)
    add_prefetch_command(sub)
    add_user_commands(sub)
    add_vsa_commands(sub)

    enroll = sub.add_parser(
        "enroll", help="queue verification of every image already in the upstream registry"
    )
    add_config(enroll)
    enroll.add_argument("--repository", help="only this repository")
    enroll.add_argument(
        "--verify-now", action="store_true", help="run the queued verifications in this process"
    )
    enroll.set_defaults(func=cmd_enroll)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, LookupError, ValueError) as exc:
        print(f"gatekeeper: {visible(exc)}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        lines = "\n".join(visible(line) for line in str(exc).splitlines())
        print(f"gatekeeper: configuration error:\n{lines}", file=sys.stderr)
        return 2
