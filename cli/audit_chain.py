"""``gatekeeper audit verify|export|prune`` and ``gatekeeper keys``: proving the access log.

``verify`` walks the hash chain and the signed checkpoints (``storage/audit_hashing.py``) of the
database, or of an export with only the public key, and names the first row that was changed,
deleted, inserted or reordered (exit 1). ``export`` writes JSON lines a third party verifies
offline. ``prune`` is the retention: it deletes old rows only up to a signed checkpoint, so
what stays still verifies. ``keys --gatekeeper`` (registered with ``keys``, whose plain form
lists the signers the gatekeeper trusts) prints the gatekeeper's own public key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from cli.config import HELP, settings_for
from cli.users import UsageError
from config.settings import Settings
from proxy.attest import checkpoints as signed
from proxy.attest.dsse import EnvelopeError
from proxy.auth.keyring import KeyFormatError, key_id, public_from_pem
from storage.audit_hashing import ChainCheck, Checkpoint, Problem, Report, Row

T = TypeVar("T")
EXPORT_FORMAT = "registry-gatekeeper-audit-export/v1"


def _config(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's unset --config must not hide one given before it.
    parser.add_argument("--config", metavar="FILE", help=HELP, default=argparse.SUPPRESS)


def add_audit_chain_commands(audit: argparse.ArgumentParser) -> None:
    """``audit verify|export|prune`` under the ``audit`` query command."""
    commands = audit.add_subparsers(dest="audit_command", metavar="{verify,export,prune}")
    check = commands.add_parser(
        "verify",
        help="check the access log's hash chain and signed checkpoints",
        description="Exit 0 when every row is as the gatekeeper wrote it; else exit 1 and name "
        "the first row that was changed, deleted, inserted or reordered.",
    )
    _config(check)
    check.add_argument(
        "--export", type=Path, metavar="FILE", help="verify this export instead of the database"
    )
    check.add_argument(
        "--key",
        type=Path,
        action="append",
        metavar="PEM",
        help="trust this public key (repeatable); needed with --export",
    )
    check.set_defaults(func=cmd_verify)
    export = commands.add_parser("export", help="the chain and checkpoints as JSON lines")
    _config(export)
    export.add_argument("--output", "-o", type=Path, help="file to write (default stdout)")
    export.set_defaults(func=cmd_export)
    prune = commands.add_parser(
        "prune", help="delete rows older than a time, up to a signed checkpoint"
    )
    _config(prune)
    prune.add_argument("--before", required=True, type=_time, help="ISO 8601")
    prune.set_defaults(func=cmd_prune)


def _time(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from exc


async def _with_db(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from storage.db import create_engine, sessionmaker, upgrade

    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        return await work(sessionmaker(engine))
    finally:
        await engine.dispose()


def cmd_keys(args: argparse.Namespace) -> int:
    from proxy.attest.keys import load

    settings = settings_for(args)
    keys = asyncio.run(_with_db(settings, lambda db: load(settings, db, create=False)))
    if args.json:
        print(json.dumps(keys.document(), indent=2))
        return 0
    if keys.signer is None:
        print(
            "gatekeeper: no signing key yet (one is made when the gatekeeper starts with a "
            "key-encryption key, or set attestations.signing_key_file)",
            file=sys.stderr,
        )
        return 1
    print(keys.document()["keys"][0]["pem"], end="")
    print(f"kid {keys.signer.kid}", file=sys.stderr)
    return 0


def _trusted(paths: list[Path]) -> dict[str, ec.EllipticCurvePublicKey]:
    keys = {}
    for path in paths:
        try:
            key = public_from_pem(path.read_bytes(), f"--key {path}")
        except OSError as exc:
            raise UsageError(f"--key {path}: {exc.strerror}") from exc
        except KeyFormatError as exc:
            raise UsageError(str(exc)) from exc
        keys[key_id(key)] = key
    return keys


def _checkpoints(
    envelopes: list[tuple[int, str | None]], keys: Mapping[str, ec.EllipticCurvePublicKey]
) -> tuple[list[Checkpoint], list[Problem], int]:
    """The checkpoints whose signatures verify, a problem for each that does not, and how
    many were never signed."""
    good, bad, unsigned = [], [], 0
    for ident, envelope in envelopes:
        if envelope is None:
            unsigned += 1
            continue
        try:
            good.append(signed.read(envelope, keys))
        except EnvelopeError as exc:
            bad.append(Problem(None, f"checkpoint {ident} does not verify: {exc}"))
    return good, bad, unsigned


def cmd_verify(args: argparse.Namespace) -> int:
    if args.export is not None:
        if not args.key:
            raise UsageError("--export needs the gatekeeper's public key: --key gatekeeper.pem")
        report, unsigned = _verify_export(args.export, _trusted(args.key))
    else:
        settings = settings_for(args)
        report, unsigned = asyncio.run(
            _with_db(settings, lambda db: _verify_db(settings, db, args))
        )
    return _print_report(report, unsigned)


async def _verify_db(settings: Settings, db: Any, args: argparse.Namespace) -> tuple[Report, int]:
    from proxy.attest.keys import load
    from storage import audit_chain

    keys = (
        _trusted(args.key) if args.key else dict((await load(settings, db, create=False)).verifying)
    )
    async with db() as session:
        stored = await audit_chain.checkpoints(session)
        legacy = await audit_chain.legacy_max_id(session)
        good, bad, unsigned = _checkpoints([(c.id, c.envelope) for c in stored], keys)
        check = ChainCheck(good, legacy_max_id=legacy)
        async for row in audit_chain.rows(session):
            check.add(row)
    report = check.finish()
    report.problems[:0] = bad
    return report, unsigned


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--export {path}: {exc.strerror}") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise UsageError(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(item, dict):
                raise UsageError(f"{path}:{number}: not a JSON object")
            yield item


def _verify_export(path: Path, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> tuple[Report, int]:
    """An export is header, checkpoints, then rows in id order: one pass, rows streamed."""
    legacy = 0
    envelopes: list[tuple[int, str | None]] = []
    check: ChainCheck | None = None
    bad: list[Problem] = []
    unsigned = 0
    for item in _lines(path):
        kind = item.get("type")
        if kind == "header":
            if item.get("format") != EXPORT_FORMAT:
                raise UsageError(f"{path}: not an export of format {EXPORT_FORMAT}")
            legacy = int(item.get("legacy_max_id") or 0)
        elif kind == "checkpoint" and check is None:
            envelope = item.get("envelope")
            envelopes.append(
                (int(item.get("id") or 0), None if envelope is None else json.dumps(envelope))
            )
        elif kind == "row":
            if check is None:
                good, bad, unsigned = _checkpoints(envelopes, keys)
                check = ChainCheck(good, legacy_max_id=legacy)
            content = item.get("content")
            if not isinstance(content, dict):
                raise UsageError(f"{path}: row {item.get('id')} has no content")
            seq = content.get("seq")
            check.add(
                Row(
                    int(item["id"]),
                    content.get("chain"),
                    int(seq) if seq is not None else None,
                    item.get("hash"),
                    content,
                )
            )
        else:
            raise UsageError(f"{path}: unexpected line of type {kind!r}")
    if check is None:
        good, bad, unsigned = _checkpoints(envelopes, keys)
        check = ChainCheck(good, legacy_max_id=legacy)
    report = check.finish()
    report.problems[:0] = bad
    return report, unsigned


def _print_report(report: Report, unsigned: int) -> int:
    first = report.first()
    if first is not None:
        print(f"audit log FAILED verification: {first.message}")
        for problem in report.problems:
            if problem is not first:
                print(f"  also: {problem.message}")
        return 1
    print(
        f"audit log verified: {report.rows} rows in {report.chains} chains, "
        f"{report.checkpoints} signed checkpoints"
    )
    if report.after_last_checkpoint:
        print(
            f"  {report.after_last_checkpoint} rows after the newest checkpoint of their chain "
            "(protected by the chain only until the next checkpoint)"
        )
    if report.legacy:
        print(f"  {report.legacy} rows written before the chain existed are not covered")
    for chain, seq in sorted(report.pruned.items()):
        print(f"  chain {chain}: positions 1-{seq} were pruned (verified from a checkpoint)")
    if unsigned:
        print(f"  {unsigned} checkpoints were written without a signing key (not trusted)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    if args.output is None:
        count = asyncio.run(_with_db(settings, lambda db: _export(db, sys.stdout)))
    else:
        with args.output.open("w", encoding="utf-8") as out:
            count = asyncio.run(_with_db(settings, lambda db: _export(db, out)))
        print(f"exported {count} rows to {args.output}", file=sys.stderr)
    return 0


async def _export(db: Any, out: TextIO) -> int:
    from storage import audit_chain

    count = 0
    async with db() as session:
        header = {
            "type": "header",
            "format": EXPORT_FORMAT,
            "legacy_max_id": await audit_chain.legacy_max_id(session),
            "exported_at": datetime.now(UTC).isoformat(),
        }
        out.write(json.dumps(header) + "\n")
        for checkpoint in await audit_chain.checkpoints(session):
            envelope = json.loads(checkpoint.envelope) if checkpoint.envelope else None
            line = {"type": "checkpoint", "id": checkpoint.id, "envelope": envelope}
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
        async for row in audit_chain.rows(session):
            out.write(json.dumps(audit_chain.as_export(row), separators=(",", ":")) + "\n")
            count += 1
    return count


def cmd_prune(args: argparse.Namespace) -> int:
    from storage import audit_chain

    settings = settings_for(args)

    async def run(db: Any) -> dict[str, int]:
        async with db() as session, session.begin():
            return await audit_chain.prune(session, args.before)

    done = asyncio.run(_with_db(settings, run))
    for chain, seq in sorted(done.items()):
        print(f"chain {chain}: deleted positions up to {seq} (a signed checkpoint)")
    if not done:
        print("nothing to prune: no signed checkpoint is older than that")
    return 0
