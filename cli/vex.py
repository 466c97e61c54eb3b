"""``gatekeeper quarantine vex add|list|withdraw``: the admin API's ``/vex`` from a terminal
(see ``cli.admin`` for the shared wiring).

A document added here is validated by the gatekeeper (a bad one is refused naming the field),
lives in its database, and re-decides the verdicts its statements touch from their stored
findings before the command returns; the command says how many changed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.admin import (
    AdminClient,
    CommandError,
    acting_options,
    common_options,
    drop_none,
    plain_text,
    print_json,
    print_table,
    run_admin,
)
from cli.waivers import applied
from config.text import visible
from oci import boundedjson
from verifiers.vex.model import MAX_BYTES


def _read_document(path: Path) -> Any:
    """The OpenVEX file as JSON, read no further than the gatekeeper would accept."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", 2) from exc
    if len(raw) > MAX_BYTES:
        raise CommandError(f"{path} is larger than {MAX_BYTES} bytes", 2)
    try:
        return boundedjson.loads(raw)
    except ValueError as exc:
        raise CommandError(f"{path} is not JSON: {exc}", 2) from exc


def cmd_add(client: AdminClient, args: argparse.Namespace) -> None:
    body = {
        "document": _read_document(args.file),
        "scope": args.scope,
        "reason": args.reason,
        "actor": args.actor,
    }
    result = client.call("POST", "/vex", body=drop_none(body))
    if args.json:
        return print_json(result)
    vex = result["vex"]
    statements = len(vex["document"].get("statements") or [])
    print(
        visible(
            f"VEX {vex['id']}: {statements} statement(s) by {vex['author']} in {vex['scope']}; "
            f"{applied(result)}"
        )
    )


def cmd_list(client: AdminClient, args: argparse.Namespace) -> None:
    listed = client.call("GET", "/vex", params={"all": "true" if args.all else None})["vex"]
    if args.json:
        return print_json(listed)
    if not listed:
        return print("no VEX documents")
    print_table(
        ("id", "source", "scope", "subject", "status", "author", "statements"),
        [
            (
                d.get("id") or f"settings:{d.get('policy')}",
                d["source"],
                d["scope"],
                d.get("subject") or "-",
                d["status"],
                d["author"],
                len(d["document"].get("statements") or []),
            )
            for d in listed
        ],
    )


def cmd_withdraw(client: AdminClient, args: argparse.Namespace) -> None:
    body = drop_none({"reason": args.reason, "actor": args.actor})
    result = client.call("POST", f"/vex/{args.id}/withdraw", body=body)
    if args.json:
        return print_json(result)
    vex = result["vex"]
    print(visible(f"withdrew VEX {vex['id']} (by {vex['author']} in {vex['scope']})"))
    print(applied(result))


def add_vex_commands(quarantine: Any) -> None:
    """Add ``vex add|list|withdraw`` to ``gatekeeper quarantine``."""
    common = common_options()
    vex = quarantine.add_parser("vex", help="add, list or withdraw OpenVEX documents")
    v = vex.add_subparsers(dest="vex_command", required=True)
    p = v.add_parser(
        "add",
        parents=[common],
        help="accept an OpenVEX file within a repository pattern (re-decides from stored findings)",
    )
    p.add_argument("file", type=Path, help="the OpenVEX document (JSON)")
    p.add_argument(
        "--scope", "-s", type=plain_text, required=True, help="repository glob, e.g. team/*"
    )
    acting_options(p, reason_required=True)
    p.set_defaults(func=run_admin, admin_command=cmd_add)
    p = v.add_parser("list", parents=[common], help="stored and settings-file VEX documents")
    p.add_argument("--all", action="store_true", help="also withdrawn ones")
    p.set_defaults(func=run_admin, admin_command=cmd_list)
    p = v.add_parser("withdraw", parents=[common], help="withdraw a stored VEX document")
    p.add_argument("id", type=int, help="the document's id (from `vex list`)")
    acting_options(p, reason_required=True)
    p.set_defaults(func=run_admin, admin_command=cmd_withdraw)
