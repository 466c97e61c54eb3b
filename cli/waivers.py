"""``gatekeeper quarantine waive`` and ``gatekeeper quarantine waivers list|withdraw``: the
admin API's ``/waivers`` from a terminal (see ``cli.admin`` for the shared wiring).

A waiver made here lives in the gatekeeper's database, applies next to the settings file's, and
re-decides the verdicts it touches from their stored findings before the command returns; the
command says how many changed.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.admin import (
    AdminClient,
    acting_options,
    common_options,
    drop_none,
    expiry_fields,
    expiry_options,
    plain_text,
    print_json,
    print_table,
    run_admin,
)
from config.text import visible


def applied(result: dict[str, Any]) -> str:
    """What a change to the policies re-decided (a waiver's, a VEX document's), in a line."""
    done = result["reevaluation"]
    return (
        f"{done['reevaluated']} verdicts decided again from stored findings ({done['changed']} "
        f"changed, {done['quarantined']} newly quarantined)"
    )


def cmd_waive(client: AdminClient, args: argparse.Namespace) -> None:
    body = {
        "finding": args.finding,
        "scope": args.scope,
        "reason": args.reason,
        "actor": args.actor,
        **expiry_fields(args),
    }
    result = client.call("POST", "/waivers", body=drop_none(body))
    if args.json:
        return print_json(result)
    waiver = result["waiver"]
    until = f" until {waiver['expires_at']}" if waiver["expires_at"] else ""
    print(
        visible(
            f"waiver {waiver['id']}: {waiver['finding']} in {waiver['scope']}{until} "
            f"(by {waiver['author']}); {applied(result)}"
        )
    )


def cmd_list(client: AdminClient, args: argparse.Namespace) -> None:
    params = {"repository": args.repository, "all": "true" if args.all else None}
    listed = client.call("GET", "/waivers", params=params)["waivers"]
    if args.json:
        return print_json(listed)
    if not listed:
        return print("no waivers match")
    print_table(
        ("id", "finding", "scope", "status", "expires", "author", "reason"),
        [
            (
                w.get("id") or f"settings:{w['policy']}",
                w["finding"],
                w["scope"],
                w["status"],
                (w["expires_at"] or "-")[:19].replace("T", " "),
                w["author"],
                w["reason"],
            )
            for w in listed
        ],
    )


def cmd_withdraw(client: AdminClient, args: argparse.Namespace) -> None:
    body = drop_none({"reason": args.reason, "actor": args.actor})
    result = client.call("POST", f"/waivers/{args.id}/withdraw", body=body)
    if args.json:
        return print_json(result)
    waiver = result["waiver"]
    print(visible(f"withdrew waiver {waiver['id']} ({waiver['finding']} in {waiver['scope']})"))
    print(applied(result))


def add_waiver_commands(quarantine: Any) -> None:
    """Add ``waive`` and ``waivers`` to ``gatekeeper quarantine``."""
    common = common_options()
    p = quarantine.add_parser(
        "waive",
        parents=[common],
        help="accept a finding within a repository pattern (re-decides from stored findings)",
    )
    p.add_argument("finding", help="a rule id (CVE-2024-1) or verifier:rule")
    p.add_argument(
        "--scope", "-s", type=plain_text, required=True, help="repository glob, e.g. team/*"
    )
    acting_options(p, reason_required=True)
    expiry_options(p)
    p.set_defaults(func=run_admin, admin_command=cmd_waive)

    waivers = quarantine.add_parser("waivers", help="list or withdraw waivers")
    w = waivers.add_subparsers(dest="waivers_command", required=True)
    p = w.add_parser("list", parents=[common], help="waivers, stored and from the settings file")
    p.add_argument("--repository", "-r", help="only those that apply to this repository")
    p.add_argument("--all", action="store_true", help="also expired and withdrawn ones")
    p.set_defaults(func=run_admin, admin_command=cmd_list)
    p = w.add_parser("withdraw", parents=[common], help="withdraw a stored waiver")
    p.add_argument("id", type=int, help="the waiver's id (from `waivers list`)")
    acting_options(p, reason_required=True)
    p.set_defaults(func=run_admin, admin_command=cmd_withdraw)
